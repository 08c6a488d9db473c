/**
 * @module auth/tokens
 * Token authorization as TorchServe 0.11+: three keys written to key_file.json (mode 0600) at
 * start. The inference key opens the inference API, the management key the management API, the
 * API key only the /token endpoint that rotates the other two. Keys expire after
 * token_expiration_min minutes; the API key never does. An expired key is a wrong key.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import { rmSync } from 'node:fs';
import { replaceFileSync } from '../replace-file.js';

export type TokenKind = 'inference' | 'management';

interface Key {
  key: string;
  expiresAt: number;
}

export class TokenStore {
  readonly file: string;
  private readonly lifetimeMs: number;
  private readonly keys: Record<TokenKind, Key>;
  private readonly apiKey: string;

  constructor(file: string, expirationMin: number, now = Date.now()) {
    this.file = file;
    this.lifetimeMs = expirationMin * 60_000;
    this.keys = { inference: this.newKey(now), management: this.newKey(now) };
    this.apiKey = generateKey();
    this.save();
  }

  /** True when the Authorization header carries the live key of `kind`. */
  allows(kind: TokenKind, authorization: string | undefined, now = Date.now()): boolean {
    const given = bearer(authorization);
    const key = this.keys[kind];
    return given !== undefined && now < key.expiresAt && sameKey(given, key.key);
  }

  /** An Authorization header the live key of `kind` passes with: the server's own requests send it (http/warm-up.ts). */
  authorization(kind: TokenKind): string {
    return `Bearer ${this.keys[kind].key}`;
  }

  allowsApiKey(authorization: string | undefined): boolean {
    const given = bearer(authorization);
    return given !== undefined && sameKey(given, this.apiKey);
  }

  /** A new key of `kind`, with a fresh expiry; the key file is rewritten. */
  refresh(kind: TokenKind, now = Date.now()): { key: string; 'expiration time': string } {
    this.keys[kind] = this.newKey(now);
    this.save();
    return this.describe(kind);
  }

  remove(): void {
    rmSync(this.file, { force: true });
  }

  private newKey(now: number): Key {
    return { key: generateKey(), expiresAt: now + this.lifetimeMs };
  }

  private describe(kind: TokenKind): { key: string; 'expiration time': string } {
    return { key: this.keys[kind].key, 'expiration time': new Date(this.keys[kind].expiresAt).toISOString() };
  }

  private save(): void {
    const body = { management: this.describe('management'), inference: this.describe('inference'), API: { key: this.apiKey } };
    // Replaced whole: users' scripts read it as soon as it exists.
    replaceFileSync(this.file, JSON.stringify(body, null, 2) + '\n', 0o600);
  }
}

/** 8 URL-safe base64 characters from 6 random bytes, as TorchServe's keys. */
function generateKey(): string {
  return randomBytes(6).toString('base64url');
}

function bearer(header: string | undefined): string | undefined {
  return /^Bearer\s+(\S+)$/.exec(header ?? '')?.[1];
}

function sameKey(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
