"""The PyTorch half of tsserve-convert: a TorchServe model file to ONNX.

    python3 export_onnx.py --serialized model.pt [--model-file model.py] --shape 3,224,224
        --output model.onnx --check-dir DIR

Loads the model as TorchServe's Python worker would (TorchScript with torch.jit.load; otherwise a
state dict for the one nn.Module class that --model-file defines), exports it with a dynamic batch
axis, and writes a seeded batch of two inputs and the model's outputs for them to DIR/input.bin and
DIR/output-<i>.bin (float32, little-endian), with their shapes in DIR/check.json, so the caller can
run the ONNX file on the same input and compare. Errors go to stderr as one line and exit 1.
"""
import argparse
import importlib.util
import inspect
import json
import os
import sys


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(1)


try:
    import torch
except ImportError:
    fail(f"{sys.executable} has no torch: run tsserve-convert with --python pointing at a Python that has it")


def load_model(serialized, model_file):
    try:
        return torch.jit.load(serialized, map_location="cpu")
    except RuntimeError:
        pass  # not TorchScript: a state dict for model_file's class
    if not model_file:
        fail(f"{os.path.basename(serialized)} is not TorchScript, and the archive has no model file "
             "(--model-file) to load its state dict into")
    spec = importlib.util.spec_from_file_location("model_module", model_file)
    module = importlib.util.module_from_spec(spec)
    sys.path.insert(0, os.path.dirname(model_file))
    spec.loader.exec_module(module)
    classes = [c for _, c in inspect.getmembers(module, inspect.isclass)
               if issubclass(c, torch.nn.Module) and c.__module__ == module.__name__]
    if len(classes) != 1:
        fail(f"{os.path.basename(model_file)} must define exactly one nn.Module class, as TorchServe "
             f"requires (found {len(classes)})")
    model = classes[0]()
    state = torch.load(serialized, map_location="cpu")
    if isinstance(state, torch.nn.Module):
        return state
    model.load_state_dict(state)
    return model


def flat_outputs(result):
    if isinstance(result, torch.Tensor):
        return [result]
    if isinstance(result, dict):
        return [t for v in result.values() for t in flat_outputs(v)]
    if isinstance(result, (list, tuple)):
        return [t for v in result for t in flat_outputs(v)]
    fail(f"the model returns {type(result).__name__}; tsserve-convert exports tensors, lists or dicts of them")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--serialized", required=True)
    parser.add_argument("--model-file")
    parser.add_argument("--shape", required=True, help="one input's shape without the batch axis")
    parser.add_argument("--output", required=True)
    parser.add_argument("--check-dir", required=True)
    parser.add_argument("--opset", type=int, default=13)
    args = parser.parse_args()

    model = load_model(args.serialized, args.model_file).eval()
    shape = [int(d) for d in args.shape.split(",")]
    torch.manual_seed(0)
    example = torch.randn(2, *shape)
    with torch.no_grad():
        outputs = flat_outputs(model(example))
        output_names = ["output"] if len(outputs) == 1 else [f"output_{i}" for i in range(len(outputs))]
        axes = {name: {0: "batch"} for name in ["input", *output_names]}
        torch.onnx.export(model, example, args.output, input_names=["input"], output_names=output_names,
                          dynamic_axes=axes, opset_version=args.opset)

    example.numpy().astype("<f4").tofile(os.path.join(args.check_dir, "input.bin"))
    for i, out in enumerate(outputs):
        out.float().numpy().astype("<f4").tofile(os.path.join(args.check_dir, f"output-{i}.bin"))
    with open(os.path.join(args.check_dir, "check.json"), "w") as f:
        json.dump({"input": list(example.shape), "outputs": [list(o.shape) for o in outputs]}, f)


main()
