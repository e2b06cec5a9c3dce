#!/usr/bin/python3
"""Trains a small CNN in PyTorch on Fashion-MNIST and writes the ONNX fixtures of tests/data/.

The fixtures check that mpsearch reads models from another framework: an independent trainer and
exporter (PyTorch 1.13, Debian's python3-torch), data normalization and splits exactly as
docs/semantics.md, "Data", defines them.

Writes (all small enough to commit):
  tests/data/pytorch_cnn.onnx         opset 13, constant folding: BN folded into Conv by PyTorch,
                                       ReLU6 -> Clip(min, max as constant inputs), Flatten, Gemm
  tests/data/pytorch_cnn_opset11.onnx opset 11, no constant folding, BatchNormalization nodes kept,
                                       x.reshape(-1, C) -> Reshape with a Constant shape
  tests/data/pytorch_cnn.json         the PyTorch model's accuracy on the 10,000 test images and
                                       the logits of the first 8 test images

Usage: /usr/bin/python3 scripts/make_pytorch_fixture.py [--data DIR] [--out DIR] [--epochs N]
Deterministic for a given torch build (seeded, 2 threads); 1-2 minutes per epoch on 2 idle cores.
"""
import argparse
import gzip
import json
import os

import numpy as np
import torch
from torch import nn

MEAN, STD = 0.2860, 0.3530  # docs/semantics.md, "Data"
TRAIN_COUNT = 55000  # train = training images 0..54,999


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    dims = data[3]
    shape = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(dims)]
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * dims).reshape(shape)


def load(data_dir, prefix):
    images = read_idx(os.path.join(data_dir, f"{prefix}-images-idx3-ubyte.gz"))
    labels = read_idx(os.path.join(data_dir, f"{prefix}-labels-idx1-ubyte.gz"))
    x = ((images.astype(np.float32) / np.float32(255) - np.float32(MEAN)) / np.float32(STD))
    return torch.from_numpy(x[:, None, :, :].copy()), torch.from_numpy(labels.astype(np.int64))


class SmallCnn(nn.Module):
    """Conv+BN+ReLU6, depthwise Conv+BN+ReLU6, pointwise Conv+ReLU, MaxPool, strided Conv+ReLU,
    Conv+ReLU, GlobalAveragePool, Flatten (or Reshape), Linear."""

    def __init__(self, reshape_instead_of_flatten=False):
        super().__init__()
        self.reshape = reshape_instead_of_flatten
        self.features = nn.Sequential(
            nn.Conv2d(1, 16, 3, padding=1, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 16, 3, padding=1, groups=16, bias=False), nn.BatchNorm2d(16), nn.ReLU6(),
            nn.Conv2d(16, 32, 1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 48, 3, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(48, 48, 3, padding=1), nn.ReLU(),
            nn.AdaptiveAvgPool2d(1),
        )
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(48, 10)

    def forward(self, x):
        x = self.features(x)
        x = x.reshape(-1, 48) if self.reshape else self.flatten(x)
        return self.classifier(x)


def train(model, x, y, epochs, batch_size=64):
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(1)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            index = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[index]), y[index])
            loss.backward()
            optimizer.step()
            total += loss.item() * len(index)
        print(f"epoch {epoch + 1}: train loss {total / len(x):.4f}", flush=True)


@torch.no_grad()
def logits_of(model, x, batch_size=1000):
    model.eval()
    return torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])


def export(model, path, opset, fold):
    model.eval()
    torch.onnx.export(model, torch.zeros(1, 1, 28, 28), path, opset_version=opset,
                      do_constant_folding=fold, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
                      training=torch.onnx.TrainingMode.EVAL if fold
                      else torch.onnx.TrainingMode.PRESERVE)
    print(f"wrote {path} ({os.path.getsize(path)} bytes)")


def main():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    parser.add_argument("--out", default=os.path.join(root, "tests", "data"))
    parser.add_argument("--epochs", type=int, default=2)
    args = parser.parse_args()

    torch.manual_seed(0)
    torch.set_num_threads(2)
    train_x, train_y = load(args.data, "train")
    test_x, test_y = load(args.data, "t10k")
    train_x, train_y = train_x[:TRAIN_COUNT], train_y[:TRAIN_COUNT]

    model = SmallCnn()
    train(model, train_x, train_y, args.epochs)
    logits = logits_of(model, test_x)
    predictions = np.argmax(logits.numpy(), axis=1)  # first index on ties
    correct = int((predictions == test_y.numpy()).sum())

    os.makedirs(args.out, exist_ok=True)
    export(model, os.path.join(args.out, "pytorch_cnn.onnx"), 13, True)
    # Same weights; BatchNormalization kept, Reshape instead of Flatten, older opset.
    variant = SmallCnn(reshape_instead_of_flatten=True)
    variant.load_state_dict(model.state_dict())
    export(variant, os.path.join(args.out, "pytorch_cnn_opset11.onnx"), 11, False)

    result = {
        "model": "pytorch_cnn.onnx",
        "split": "test",
        "images": len(test_x),
        "correct": correct,
        "accuracy": round(100.0 * correct / len(test_x), 4),
        "torch_version": torch.__version__,
        "first_logits": [[float(v) for v in row] for row in logits[:8].tolist()],
    }
    with open(os.path.join(args.out, "pytorch_cnn.json"), "w") as f:
        json.dump(result, f, indent=1)
        f.write("\n")
    print(f"test accuracy {result['accuracy']:.2f}% ({correct}/{len(test_x)})")


if __name__ == "__main__":
    main()
