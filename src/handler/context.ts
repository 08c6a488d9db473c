/**
 * @module handler/context
 * The Context a handler receives: fixed model facts, plus per-batch request ids, headers,
 * response status/headers and metrics, gathered here and read back by handler/run.ts.
 */
import type { StageName, WireMetric, WireRequest, WireStage, WireTraceContext } from '../protocol/messages.js';
import type { Context, HandlerManifest, HandlerOutput, MetricsApi, SystemProperties } from './types.js';

export interface ModelFacts {
  readonly modelName: string;
  readonly manifest: HandlerManifest;
  readonly systemProperties: SystemProperties;
  readonly modelYamlConfig: Record<string, unknown>;
  readonly sequenceIdHeader: string;
}

export interface ResponseMeta {
  status: number;
  phrase: string;
  headers: Record<string, string>;
}

export class BatchContext implements Context {
  readonly modelName: string;
  readonly manifest: HandlerManifest;
  readonly systemProperties: SystemProperties;
  readonly modelYamlConfig: Record<string, unknown>;
  readonly requestIds: Record<number, string>;
  readonly metrics: MetricsApi;
  readonly responses: ResponseMeta[];
  readonly collectedMetrics: WireMetric[] = [];
  /** The batch's stages as they ended (stage()), for the front end's histograms and spans. */
  readonly stages: WireStage[];
  readonly traceparent: string | undefined;
  private readonly requests: WireRequest[];
  private readonly sequenceIdHeader: string;
  private readonly onIntermediate: (outputs: HandlerOutput[]) => void;

  constructor(
    facts: ModelFacts,
    requests: WireRequest[],
    onIntermediate: (outputs: HandlerOutput[]) => void = () => {},
    stages: WireStage[] = [],
    trace?: WireTraceContext,
  ) {
    this.stages = stages;
    this.traceparent = trace ? `00-${trace.traceId}-${trace.spanId}-01` : undefined;
    this.modelName = facts.modelName;
    this.manifest = facts.manifest;
    this.systemProperties = facts.systemProperties;
    this.modelYamlConfig = facts.modelYamlConfig;
    this.requests = requests;
    this.sequenceIdHeader = facts.sequenceIdHeader;
    this.onIntermediate = onIntermediate;
    this.requestIds = Object.fromEntries(requests.map((r, i) => [i, r.id]));
    this.responses = requests.map(() => ({ status: 200, phrase: '', headers: {} }));
    this.metrics = metricsCollector(this.collectedMetrics, facts.modelName);
  }

  getRequestId(idx = 0): string | undefined {
    return this.requests[idx]?.id;
  }

  getRequestHeader(idx: number, key: string): string | undefined {
    const headers = this.requests[idx]?.headers ?? {};
    const wanted = key.toLowerCase();
    for (const [k, v] of Object.entries(headers)) if (k.toLowerCase() === wanted) return v;
    return undefined;
  }

  getSequenceId(idx: number): string | undefined {
    return this.getRequestHeader(idx, this.sequenceIdHeader);
  }

  getAllRequestHeaders(idx: number): Readonly<Record<string, string>> {
    return this.requests[idx]?.headers ?? {};
  }

  setResponseStatus(code: number, phrase = '', idx = 0): void {
    const r = this.responses[idx];
    if (r) Object.assign(r, { status: code, phrase });
  }

  setAllResponseStatus(code: number, phrase = ''): void {
    for (let i = 0; i < this.responses.length; i++) this.setResponseStatus(code, phrase, i);
  }

  setResponseHeader(idx: number, key: string, value: string): void {
    const r = this.responses[idx];
    if (r) r.headers[key.toLowerCase()] = value;
  }

  getResponseHeaders(idx: number): Readonly<Record<string, string>> {
    return this.responses[idx]?.headers ?? {};
  }

  setResponseContentType(idx: number, value: string): void {
    this.setResponseHeader(idx, 'content-type', value);
  }

  getResponseContentType(idx: number): string | undefined {
    return this.responses[idx]?.headers['content-type'];
  }

  sendIntermediateResponse(outputs: HandlerOutput[]): void {
    this.onIntermediate(outputs);
  }
}

/** Now on the clock both processes share: milliseconds since the Unix epoch, sub-millisecond. */
export function epochMs(): number {
  return performance.timeOrigin + performance.now();
}

/**
 * Runs one stage of a batch and records when it began and ended, also when it throws (the stage
 * that failed is then the last one). A context that is not the worker's own (a handler's test
 * passing its own) records nothing.
 */
export async function stage<T>(context: Context, name: StageName, run: () => Promise<T>): Promise<T> {
  if (!(context instanceof BatchContext)) return run();
  const start = epochMs();
  try {
    return await run();
  } finally {
    context.stages.push({ name, start, end: epochMs() });
  }
}

/**
 * A customized describe (`describe: True` on the batch's first request): the handler answers with
 * its description, and an envelope lets the request through unread.
 */
export function isDescribeRequest(context: Context): boolean {
  return context.getRequestHeader(0, 'describe') === 'True';
}

/** The long unit names TorchServe's worker writes for its size abbreviations. */
const SIZE_UNITS = { MB: 'Megabytes', kB: 'Kilobytes', GB: 'Gigabytes', B: 'Bytes' } as const;

function metricsCollector(into: WireMetric[], modelName: string): MetricsApi {
  const add = (name: string, value: number, unit: string, type: 'counter' | 'gauge', dimensions: Record<string, string> = {}): void => {
    into.push({ name, unit, type, value, dimensions: { ModelName: modelName, Level: 'Model', ...dimensions } });
  };
  return {
    addCounter(name, value, dimensions) {
      if (value < 0) throw new RangeError(`Counter ${name} cannot be increased by a negative value`);
      add(name, value, 'Count', 'counter', dimensions);
    },
    addTime(name, value, unit = 'ms', dimensions) {
      add(name, value, unit === 's' ? 'Seconds' : 'Milliseconds', 'gauge', dimensions);
    },
    addSize(name, value, unit = 'MB', dimensions) {
      add(name, value, SIZE_UNITS[unit], 'gauge', dimensions);
    },
    addPercent(name, value, dimensions) {
      add(name, value, 'Percent', 'gauge', dimensions);
    },
    addError(name, value, dimensions) {
      // TorchServe's add_error has no unit, which its worker writes as `unit`.
      add(name, value, 'unit', 'counter', { ...dimensions, Level: 'Error' });
    },
    addMetric(name, value, unit, type = 'counter', dimensions) {
      add(name, value, unit, type, dimensions);
    },
  };
}
