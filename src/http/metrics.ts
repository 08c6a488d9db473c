/**
 * @module http/metrics
 * GET /metrics (any method, no token), optionally filtered by `name[]=<family>`.
 */
import type { FastifyInstance } from 'fastify';
import type { MetricsRegistry } from '../metrics/registry.js';
import { documented } from './api-description.js';

export async function metricsRoutes(app: FastifyInstance, deps: { readonly metrics: MetricsRegistry }): Promise<void> {
  app.all('/metrics', documented('Prometheus metrics; filter with name[]=<family>', ['GET']), async (request, reply) => {
    const query = request.query as Record<string, string | string[] | undefined>;
    const raw = query['name[]'] ?? [];
    const names = Array.isArray(raw) ? raw : [raw];
    const body = await deps.metrics.render(names);
    return reply.code(200).type('text/plain; version=0.0.4; charset=utf-8').send(body);
  });
}
