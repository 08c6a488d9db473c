/**
 * @module config/properties
 * Java `.properties` files as TorchServe reads config.properties: `key=value`, `key:value` or
 * `key value`; `#` and `!` comments; backslash line continuation; `\:`, `\=`, `\n`, `\t`, `\uXXXX`
 * escapes; `$$ENV$$` replaced by the environment variable.
 */

export function parseProperties(text: string, env: NodeJS.ProcessEnv = process.env): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of logicalLines(text)) {
    const { key, value } = splitKeyValue(line);
    if (key) out.set(key, substituteEnv(value, env));
  }
  return out;
}

/** Joins continued lines and drops comments and blanks. */
function* logicalLines(text: string): Generator<string> {
  let pending = '';
  for (const raw of text.split(/\r\n|\r|\n/)) {
    const line = raw.replace(/^\s+/, '');
    if (!pending && (line === '' || line.startsWith('#') || line.startsWith('!'))) continue;
    if (endsWithOddBackslashes(line)) {
      pending += line.slice(0, -1);
      continue;
    }
    yield pending + line;
    pending = '';
  }
  if (pending) yield pending;
}

function endsWithOddBackslashes(line: string): boolean {
  const m = /\\+$/.exec(line);
  return m !== null && m[0].length % 2 === 1;
}

function splitKeyValue(line: string): { key: string; value: string } {
  let i = 0;
  let key = '';
  while (i < line.length) {
    const c = line[i];
    if (c === '\\' && i + 1 < line.length) {
      key += unescapeChar(line, i);
      i += escapeLength(line, i);
      continue;
    }
    if (c === '=' || c === ':' || c === ' ' || c === '\t' || c === '\f') break;
    key += c;
    i++;
  }
  // Separator: optional whitespace, then at most one '=' or ':', then optional whitespace.
  while (i < line.length && /[ \t\f]/.test(line[i]!)) i++;
  if (line[i] === '=' || line[i] === ':') i++;
  while (i < line.length && /[ \t\f]/.test(line[i]!)) i++;
  return { key, value: unescapeAll(line.slice(i)) };
}

function unescapeAll(s: string): string {
  let out = '';
  for (let i = 0; i < s.length; ) {
    if (s[i] === '\\' && i + 1 < s.length) {
      out += unescapeChar(s, i);
      i += escapeLength(s, i);
    } else {
      out += s[i++];
    }
  }
  return out;
}

const SIMPLE_ESCAPES: Record<string, string> = { n: '\n', t: '\t', r: '\r', f: '\f' };

function unescapeChar(s: string, i: number): string {
  const c = s[i + 1]!;
  if (c === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6))) {
    return String.fromCharCode(parseInt(s.slice(i + 2, i + 6), 16));
  }
  return SIMPLE_ESCAPES[c] ?? c;
}

function escapeLength(s: string, i: number): number {
  return s[i + 1] === 'u' && /^[0-9a-fA-F]{4}$/.test(s.slice(i + 2, i + 6)) ? 6 : 2;
}

function substituteEnv(value: string, env: NodeJS.ProcessEnv): string {
  return value.replace(/\$\$([A-Za-z_][A-Za-z0-9_]*)\$\$/g, (_, name: string) => {
    const v = env[name];
    if (v === undefined) throw new Error(`Invalid Environment Variable ${name}`);
    return v;
  });
}

/** Java's Properties.store format, for snapshots: comment lines, then escaped `key=value` lines. */
export function formatProperties(entries: Iterable<[string, string]>, comments: readonly string[] = []): string {
  const lines = comments.map((c) => `#${c}`);
  for (const [k, v] of entries) lines.push(`${escapeText(k, true)}=${escapeText(v, false)}`);
  return lines.join('\n') + '\n';
}

function escapeText(s: string, isKey: boolean): string {
  let out = '';
  for (const [i, c] of [...s].entries()) {
    if (c === '\\') out += '\\\\';
    else if (c === '\n') out += '\\n';
    else if (c === '\r') out += '\\r';
    else if (c === '\t') out += '\\t';
    else if (c === '\f') out += '\\f';
    else if (':=#!'.includes(c)) out += `\\${c}`;
    else if (c === ' ' && (isKey || i === 0)) out += '\\ ';
    else out += c;
  }
  return out;
}
