/**
 * @module handler/envelope
 * TorchServe's request envelopes wrap a handler's entry point (`service_envelope` in
 * config.properties, else the manifest's `envelope`). tsserve has `json`, the form TF Serving
 * clients send: `{"instances": [...]}` in, `{"predictions": [...]}` out. The instances of every
 * request of a batch go to the handler as one flat batch, one row per instance (an instance
 * `{"b64": "..."}` arrives as its bytes, as `body` and `data`); the answers are grouped back, one
 * `{"predictions": [...]}` per request, bytes as `{"b64": "..."}`. As in TorchServe, the context
 * still describes the HTTP requests, not the instances.
 */
import type { EntryPoint } from './load.js';
import { PredictionError, type Context, type HandlerOutput, type InputValue, type JsonValue, type RequestInput } from './types.js';

export const ENVELOPES = ['json'] as const;
export type Envelope = (typeof ENVELOPES)[number];

export function isEnvelope(name: string): name is Envelope {
  return (ENVELOPES as readonly string[]).includes(name);
}

export function withEnvelope(entry: EntryPoint, envelope: Envelope | undefined): EntryPoint {
  if (envelope !== 'json') return entry;
  return {
    initialize: (context: Context) => entry.initialize(context),
    async handle(batch: RequestInput[], context: Context): Promise<HandlerOutput[]> {
      const perRequest = batch.map(instancesOf);
      const instances = perRequest.flat();
      const outputs = await entry.handle(instances, context);
      if (!Array.isArray(outputs) || outputs.length !== instances.length) return outputs as HandlerOutput[];
      let next = 0;
      return perRequest.map((rows) => ({ predictions: rows.map(() => asJson(outputs[next++] as HandlerOutput)) }));
    },
  };
}

function instancesOf(request: RequestInput): RequestInput[] {
  const body = parsed(request.body ?? request.data);
  const instances = body && typeof body === 'object' && !Array.isArray(body) && !Buffer.isBuffer(body) ? body.instances : undefined;
  if (!Array.isArray(instances)) throw new PredictionError('Expected a JSON body {"instances": [...]}', 400);
  return instances.map((instance) => {
    const value = decodeB64(instance);
    return { body: value, data: value };
  });
}

function parsed(value: InputValue | undefined): InputValue | undefined {
  if (!Buffer.isBuffer(value) && typeof value !== 'string') return value;
  try {
    return JSON.parse(value.toString()) as JsonValue;
  } catch {
    return undefined;
  }
}

function decodeB64(value: JsonValue): InputValue {
  if (value && typeof value === 'object' && !Array.isArray(value) && typeof value.b64 === 'string' && Object.keys(value).length === 1) {
    return Buffer.from(value.b64, 'base64');
  }
  return value;
}

/** An answer as a JSON value inside `predictions`; a Map keeps its order through the serializer. */
function asJson(output: HandlerOutput): HandlerOutput {
  if (output instanceof Uint8Array) return { b64: Buffer.from(output).toString('base64') };
  return output;
}
