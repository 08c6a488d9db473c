/**
 * @module http/workflows
 * TorchServe 0.12's workflow API, as it answers: registering a workflow is disabled in its code,
 * so there are never any workflows. POST /workflows is a 400, the list is empty, a named workflow
 * is not found, and so is one asked for a prediction (/wfpredict, on the inference listener).
 */
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { tsError } from '../errors.js';
import { documented } from './api-description.js';
import { sendJson } from './reply.js';

type NamedRequest = FastifyRequest<{ Params: { name: string } }>;

const notFound = async (request: NamedRequest): Promise<never> => {
  throw tsError('TSS_ERR_WORKFLOW_NOT_FOUND', request.params.name);
};

export function workflowManagementRoutes(app: FastifyInstance): void {
  app.post('/workflows', documented('Register a workflow: disabled, as in TorchServe 0.12'), async () => {
    throw tsError('TSS_ERR_HTTP_BAD_REQUEST', 'Registering new workflows is disabled.');
  });
  app.get('/workflows', documented('List the workflows (there are none: registration is disabled)'), async (_request, reply) =>
    sendJson(reply, 200, { workflows: [] }),
  );
  app.get('/workflows/:name', documented('Describe a workflow'), notFound);
  app.delete('/workflows/:name', documented('Unregister a workflow'), notFound);
}

export function workflowInferenceRoutes(app: FastifyInstance): void {
  app.all('/wfpredict/:name', documented('Prediction of a workflow', ['POST']), notFound);
}
