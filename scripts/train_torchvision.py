#!/usr/bin/python3
"""Trains torchvision's ResNet-18 or MobileNetV2 (full width, torchvision 0.14's own classes) on
Fashion-MNIST with a 1-channel stem and 10 classes, and exports it to ONNX for
configs/torchvision/*.yaml: the README's bring-your-own-model example.

Data, normalization and splits as docs/semantics.md, "Data": training images 0..54,999 train,
55,000..59,999 are mpsearch's validation split, the 10,000 test images are only scored at the end.
The 28 x 28 images are used as they are (ResNet-18's stem and pooling reduce them to 1 x 1 at
layer4; MobileNetV2's to 1 x 1 at its last stage).

Usage: /usr/bin/python3 scripts/train_torchvision.py resnet18|mobilenet_v2 [--epochs N]
         [--out models/torchvision/NAME.onnx] [--data DIR]
Deterministic for a given torch build (seeded, 2 threads). Measured here (2 cores): see the README.
"""
import argparse
import json
import os
import time

import numpy as np
import torch
from torch import nn
import torchvision.models as tvm

from make_pytorch_fixture import load  # the same idx reading and normalization

TRAIN_COUNT = 55000


def make(name):
    if name == "resnet18":
        m = tvm.resnet18(num_classes=10)
        m.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)
        return m
    m = tvm.mobilenet_v2(num_classes=10)
    m.features[0][0] = nn.Conv2d(1, 32, 3, 2, 1, bias=False)
    return m


def accuracy(model, x, y, batch=500):
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(x), batch):
            correct += (model(x[s:s + batch]).argmax(1) == y[s:s + batch]).sum().item()
    return 100.0 * correct / len(x)


def train(model, x, y, epochs, batch_size=128):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4,
                                nesterov=True)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, 0.1, total_steps=steps)
    generator = torch.Generator().manual_seed(1)
    loss_fn = nn.CrossEntropyLoss()
    for epoch in range(epochs):
        model.train()
        order = torch.randperm(len(x), generator=generator)
        total, start_time = 0.0, time.time()
        for start in range(0, len(x), batch_size):
            idx = order[start:start + batch_size]
            optimizer.zero_grad()
            loss = loss_fn(model(x[idx]), y[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}: loss {total / len(x):.4f}, {time.time() - start_time:.0f} s",
              flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("name", choices=["resnet18", "mobilenet_v2"])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    out = args.out or f"models/torchvision/{args.name}.onnx"
    torch.manual_seed(0)
    torch.set_num_threads(2)
    x, y = load(args.data, "train")
    test_x, test_y = load(args.data, "t10k")
    model = make(args.name)
    train(model, x[:TRAIN_COUNT], y[:TRAIN_COUNT], args.epochs)
    model.eval()
    result = {"model": args.name, "epochs": args.epochs,
              "validation_accuracy": accuracy(model, x[TRAIN_COUNT:], y[TRAIN_COUNT:]),
              "test_accuracy": accuracy(model, test_x, test_y)}
    os.makedirs(os.path.dirname(out) or ".", exist_ok=True)
    torch.onnx.export(model, x[:1], out + ".tmp", opset_version=13, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"])
    os.replace(out + ".tmp", out)
    with open(os.path.splitext(out)[0] + ".json", "w") as f:
        json.dump(result, f, indent=1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
