/**
 * @module http/params
 * Query (or JSON body) parameters read as TorchServe reads them: integers that do not parse fall
 * back to the default, booleans are true only for the string `true`. What falls back is said
 * (registerWarnings, scaleWarnings), as TorchServe does not: the request still succeeds, as it does there.
 * gRPC management reads its fields as these parameters too (grpc/management.ts), so registerCall
 * and scaleCall make the model service's calls of both APIs alike.
 */
import { closestName } from '../config/keys.js';
import { parseIntOr } from '../config/server-config.js';
import { tsError } from '../errors.js';
import type { RegisterCall, ScaleCall } from '../models/model-service.js';
import { shown } from '../shown.js';

export type Params = Record<string, string | undefined>;

export function intParam(params: Params, name: string): number | undefined {
  const n = parseIntOr(params[name], Number.NaN);
  return Number.isNaN(n) ? undefined : n;
}

export function boolParam(params: Params, name: string, dflt: boolean): boolean {
  const v = params[name];
  return v === undefined ? dflt : v.toLowerCase() === 'true';
}

/** An API's parameters; a whole number's least value, and what is used below it. */
type ParamRules = Readonly<Record<string, { min: number; below?: string } | 'bool' | 'text'>>;

const REGISTER_PARAMS: ParamRules = {
  url: 'text',
  model_name: 'text',
  handler: 'text',
  runtime: 'text',
  batch_size: { min: 1 },
  max_batch_delay: { min: 0 },
  initial_workers: { min: 0, below: '0 is used' },
  response_timeout: { min: 1 },
  startup_timeout: { min: 0 },
  synchronous: 'bool',
  s3_sse_kms: 'bool',
};

/** The scale API's; a negative worker count is refused (400) before any warning is given. */
const SCALE_PARAMS: ParamRules = {
  model_version: 'text',
  min_worker: { min: 0 },
  max_worker: { min: 0 },
  number_gpu: { min: 0 },
  timeout: { min: -1 },
  synchronous: 'bool',
};

/**
 * What a register call asks for that the server cannot do as written: a number that does not
 * parse or is out of range (the default is used), a flag that is neither true nor false (false is
 * used), a parameter that does not exist (named with the nearest one that does).
 */
export function registerWarnings(params: Params): string[] {
  return paramWarnings(params, REGISTER_PARAMS);
}

/** The same for a scale call (`PUT /models/{m}[/{v}]`): `min_worker=abc` scales to the default, and says so. */
export function scaleWarnings(params: Params): string[] {
  return paramWarnings(params, SCALE_PARAMS);
}

/** A register call's parameters as the model service takes them (models/model-service.ts). */
export function registerCall(p: Params): RegisterCall {
  return {
    url: p.url,
    modelName: p.model_name,
    handler: p.handler,
    runtime: p.runtime,
    batchSize: intParam(p, 'batch_size'),
    maxBatchDelay: intParam(p, 'max_batch_delay'),
    initialWorkers: intParam(p, 'initial_workers'),
    responseTimeout: intParam(p, 'response_timeout'),
    startupTimeout: intParam(p, 'startup_timeout'),
    synchronous: boolParam(p, 'synchronous', true),
    warnings: registerWarnings(p),
  };
}

/** A scale call's parameters as the model service takes them. */
export function scaleCall(p: Params): ScaleCall {
  return {
    minWorkers: intParam(p, 'min_worker'),
    maxWorkers: intParam(p, 'max_worker'),
    synchronous: boolParam(p, 'synchronous', false),
    warnings: scaleWarnings(p),
  };
}

function paramWarnings(params: Params, rules: ParamRules): string[] {
  return Object.entries(params).flatMap(([name, value]) => {
    const rule = rules[name];
    if (rule === undefined) {
      const near = closestName(name, Object.keys(rules));
      return [`unknown parameter ${shown(name)}${near ? ` (did you mean ${near}?)` : ''} is ignored`];
    }
    if (value === undefined || rule === 'text') return [];
    const given = `${name}=${shown(value)}`;
    if (rule === 'bool') return /^(true|false)$/i.test(value) ? [] : [`${given} is not true or false; false is used`];
    const n = intParam(params, name);
    if (n === undefined) return [`${given} is not a whole number; the default is used`];
    return n < rule.min ? [`${given} is less than ${rule.min}; ${rule.below ?? 'the default is used'}`] : [];
  });
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
