/**
 * @module models/model-metadata
 * A model version as the Open Inference Protocol's model metadata describes it (gRPC
 * `ModelMetadata`, REST `GET /v2/models/{m}`): its name, the versions registered, and its tensors,
 * which only the handler knows: they come from its customized description (BaseHandler's lists
 * the ONNX inputs and outputs). A handler that does not describe them, or a model without a free
 * worker to ask, answers empty lists, as TorchServe's ModelMetadata always does. A version's
 * tensors do not change while it is registered, so its handler is asked once: asking queues
 * behind the version's predictions, which a client polling metadata should not wait for.
 */
import type { Model } from './model.js';
import type { ModelRegistry } from './model-registry.js';

export interface TensorMetadata {
  readonly name: string;
  readonly datatype: string;
  readonly shape: readonly number[];
}

export interface ModelMetadata {
  readonly name: string;
  readonly versions: readonly string[];
  readonly platform: string;
  readonly inputs: readonly TensorMetadata[];
  readonly outputs: readonly TensorMetadata[];
}

type Tensors = Pick<ModelMetadata, 'inputs' | 'outputs'>;

const describedTensors = new WeakMap<Model, Tensors>();

export async function modelMetadata(registry: ModelRegistry, model: Model): Promise<ModelMetadata> {
  return {
    name: model.name,
    versions: registry.versions(model.name).map((v) => v.version),
    platform: '',
    ...(describedTensors.get(model) ?? (await askTensors(model))),
  };
}

/** The handler's answer is kept; when no worker could answer, the next call asks again. */
async function askTensors(model: Model): Promise<Tensors> {
  try {
    const described = await model.customizedMetadata();
    const found = { inputs: tensors(described?.inputs), outputs: tensors(described?.outputs) };
    describedTensors.set(model, found);
    return found;
  } catch {
    return { inputs: [], outputs: [] };
  }
}

function tensors(value: unknown): TensorMetadata[] {
  if (!Array.isArray(value)) return [];
  return value.filter(isTensorMetadata);
}

function isTensorMetadata(v: unknown): v is TensorMetadata {
  const t = v as Partial<TensorMetadata> | null;
  return typeof t?.name === 'string' && typeof t.datatype === 'string' && Array.isArray(t.shape) && t.shape.every(Number.isInteger);
}
