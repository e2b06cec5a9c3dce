#!/usr/bin/python3
"""PyTorch eager baseline for bench/: the four zoo architectures, same shapes, on this machine.

Measures float32 inference images/s at batch 256 under no_grad (10,000 images, median of 5 runs)
and the time of one training epoch (SGD with momentum, batch 128, N images, scaled to 60,000).
Random weights and random data: throughput does not depend on their values.

Needs Debian's python3-torch (not a dependency of mpsearch; only this comparison uses it):
    /usr/bin/python3 bench/pytorch_baseline.py --out bench/results/pytorch.json
"""
import argparse
import json
import statistics
import time

import torch
from torch import nn


def conv_bn(cin, cout, k=3, stride=1, groups=1, act=nn.ReLU):
    return [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False),
            nn.BatchNorm2d(cout), act()]


def lenet5():
    return nn.Sequential(nn.Conv2d(1, 6, 5, padding=2), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(6, 16, 5), nn.ReLU(), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(400, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(),
                         nn.Linear(84, 10))


def vgg_small():
    return nn.Sequential(*conv_bn(1, 32), *conv_bn(32, 32), nn.MaxPool2d(2),
                         *conv_bn(32, 64), *conv_bn(64, 64), nn.MaxPool2d(2),
                         *conv_bn(64, 128), nn.MaxPool2d(2), nn.Flatten(),
                         nn.Linear(1152, 256), nn.ReLU(), nn.Linear(256, 10))


class Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.body = nn.Sequential(*conv_bn(cin, cout, 3, stride), nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                                  nn.BatchNorm2d(cout))
        self.proj = (nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))
                     if stride != 1 or cin != cout else nn.Identity())

    def forward(self, x):
        return torch.relu(self.body(x) + self.proj(x))


def resnet8():
    return nn.Sequential(*conv_bn(1, 16), Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10))


def mobilenet_tiny():
    def ds(cin, cout, stride):
        return conv_bn(cin, cin, 3, stride, cin, nn.ReLU6) + conv_bn(cin, cout, 1, 1, 1, nn.ReLU6)
    return nn.Sequential(*conv_bn(1, 16, act=nn.ReLU6), *ds(16, 32, 2), *ds(32, 64, 2), *ds(64, 64, 1),
                         *ds(64, 128, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(128, 10))


ARCHS = {"lenet5": lenet5, "vgg_small": vgg_small, "resnet8": resnet8, "mobilenet_tiny": mobilenet_tiny}


def inference_images_per_second(model, images, batch, runs):
    model.eval()
    rates = []
    with torch.no_grad():
        model(images[:batch])  # warm-up
        for _ in range(runs):
            start = time.perf_counter()
            for i in range(0, len(images), batch):
                model(images[i:i + batch])
            rates.append(len(images) / (time.perf_counter() - start))
    return statistics.median(rates)


def train_epoch_seconds(model, images, labels, batch):
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    loss_fn = nn.CrossEntropyLoss()
    start = time.perf_counter()
    for i in range(0, len(images), batch):
        opt.zero_grad()
        loss_fn(model(images[i:i + batch]), labels[i:i + batch]).backward()
        opt.step()
    return (time.perf_counter() - start) * 60000 / len(images)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--train-images", type=int, default=12800)
    args = parser.parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    test = torch.randn(10000, 1, 28, 28)
    train = torch.randn(args.train_images, 1, 28, 28)
    labels = torch.randint(0, 10, (args.train_images,))
    results = {"torch_version": torch.__version__, "threads": torch.get_num_threads(), "models": {}}
    for name, make in ARCHS.items():
        model = make()
        ips = inference_images_per_second(model, test, 256, args.runs)
        epoch = train_epoch_seconds(model, train, labels, 128)
        results["models"][name] = {"eval_images_per_second": round(ips),
                                   "train_epoch_seconds_60k": round(epoch, 1)}
        print(f"{name:15s} eval {ips:8.0f} images/s   train epoch (60k) {epoch:6.1f} s", flush=True)
    with open(args.out + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    import os
    os.replace(args.out + ".tmp", args.out)


if __name__ == "__main__":
    main()
