/**
 * @module http/params
 * Query (or JSON body) parameters read as TorchServe reads them: integers that do not parse fall
 * back to the default, booleans are true only for the string `true`.
 */
import { parseIntOr } from '../config/server-config.js';
import { tsError } from '../errors.js';

export type Params = Record<string, string | undefined>;

export function intParam(params: Params, name: string): number | undefined {
  const n = parseIntOr(params[name], Number.NaN);
  return Number.isNaN(n) ? undefined : n;
}

export function boolParam(params: Params, name: string, dflt: boolean): boolean {
  const v = params[name];
  return v === undefined ? dflt : v.toLowerCase() === 'true';
}

/** Query parameters, merged with a JSON body's fields when the request sent one. */
export function requestParams(query: unknown, body: unknown, contentType: string | undefined): Params {
  const out: Params = {};
  for (const [k, v] of Object.entries((query ?? {}) as Record<string, unknown>)) {
    out[k] = Array.isArray(v) ? String(v[v.length - 1]) : String(v);
  }
  if (contentType?.startsWith('application/json') && Buffer.isBuffer(body) && body.length > 0) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(body.toString('utf8'));
    } catch {
      parsed = undefined;
    }
    if (parsed && typeof parsed === 'object' && !Array.isArray(parsed)) {
      for (const [k, v] of Object.entries(parsed)) {
        if (v === null || v === undefined) continue;
        // A nested value is no parameter; turning it into text would also recurse as deep as it is.
        if (typeof v === 'object') throw tsError('TSS_ERR_HTTP_BAD_REQUEST', `Parameter ${k} must be a string, a number or a boolean.`);
        out[k] = String(v);
      }
    }
  }
  return out;
}
