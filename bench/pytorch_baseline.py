#!/usr/bin/python3
"""PyTorch eager baseline for bench/: the four zoo architectures, same shapes, on this machine.

--measure float_train (default): float32 inference images/s at batch 256 under no_grad (10,000
images, median of --runs runs) and the time of one training epoch (SGD with momentum, batch 128,
N images, scaled to 60,000).

--measure fake_w4a4: images/s of the same architectures fake-quantized at W4A4 the way mpsearch
quantizes them (docs/semantics.md): BN folded into the convs; every conv / linear weight
quantized once, before tracing, per output channel, symmetric (s = max|w_k| / 7, codes -7..7),
as mpsearch's fake path quantizes weights once per policy; the input of every conv / linear
fake-quantized per tensor at 4 bits with a range fixed from one calibration batch (the max):
unsigned (s = r / 15, codes 0..15) after ReLU / ReLU6 / pooling, signed (s = r / 7, codes -7..7)
for the first layer, which reads the image. Channels_last, torch.jit.trace + torch.jit.freeze,
batch 256, 10,000 images, one warm-up pass, median of --runs timed passes.
mpsearch_bench_quantized runs this mode with --json - and reads the JSON from stdout.

Random weights and random data: throughput does not depend on their values.

Needs Debian's python3-torch (not a dependency of mpsearch; only this comparison uses it):
    /usr/bin/python3 bench/pytorch_baseline.py --out bench/results/pytorch.json
    /usr/bin/python3 bench/pytorch_baseline.py --measure fake_w4a4 --models resnet8 --json -
"""
import argparse
import json
import os
import statistics
import sys
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


BATCH = 256
BITS = 4


def fold_batch_norms(module):
    """Folds every BatchNorm2d into the conv right before it in a Sequential (mpsearch quantizes
    the BN-folded graph), in place; the BatchNorm becomes an Identity."""
    for child in module.children():
        fold_batch_norms(child)
    if not isinstance(module, nn.Sequential):
        return
    for i in range(1, len(module)):
        if isinstance(module[i], nn.BatchNorm2d) and isinstance(module[i - 1], nn.Conv2d):
            module[i - 1] = torch.nn.utils.fusion.fuse_conv_bn_eval(module[i - 1], module[i])
            module[i] = nn.Identity()


def quantizable_layers(model):
    """Conv and linear layers in module order: the order they run in these four architectures."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]


def input_ranges(model, images):
    """Per quantizable layer, the range of its input on `images` (the max; of |x| for the first
    layer, which reads the signed image, of x for the others, which read ReLU / ReLU6 / pooling
    outputs and so are unsigned: checked here, not assumed)."""
    layers = quantizable_layers(model)
    ranges = {}

    def observe(layer, inputs):
        x = inputs[0]
        if layer is layers[0]:
            ranges[layer] = x.abs().max().item()
        else:
            assert x.min().item() >= 0, "an input mpsearch treats as unsigned has negative values"
            ranges[layer] = x.max().item()

    hooks = [layer.register_forward_pre_hook(observe) for layer in layers]
    with torch.no_grad():
        model(images)
    for hook in hooks:
        hook.remove()
    return ranges


def scale_of(magnitude, qmax):
    """Range / qmax, kept above 0 because fake_quantize divides by it; an all-zero tensor then
    still quantizes to zeros, as mpsearch's s = 0 rule gives."""
    return max(magnitude, torch.finfo(torch.float32).tiny) / qmax


def quantize_weights_per_kernel(layer, bits):
    """mpsearch's `uniform` weight quantizer, once: symmetric, one scale per output channel."""
    qmax = 2 ** (bits - 1) - 1
    w = layer.weight.detach()
    magnitude = w.abs().reshape(w.shape[0], -1).amax(dim=1)
    scale = magnitude.clamp(min=torch.finfo(torch.float32).tiny) / qmax
    zero_point = torch.zeros(w.shape[0], dtype=torch.int32)
    layer.weight.data = torch.fake_quantize_per_channel_affine(w, scale, zero_point, 0, -qmax, qmax)


class FakeQuantInput(nn.Module):
    """A conv / linear layer reading its input fake-quantized per tensor with a fixed range."""

    def __init__(self, layer, input_range, signed, bits):
        super().__init__()
        self.layer = layer
        signed_max = 2 ** (bits - 1) - 1
        self.qmin, self.qmax = (-signed_max, signed_max) if signed else (0, 2 ** bits - 1)
        self.scale = scale_of(input_range, self.qmax)

    def forward(self, x):
        x = torch.fake_quantize_per_tensor_affine(x, self.scale, 0, self.qmin, self.qmax)
        return self.layer(x)


def wrap_layers(module, ranges, first, bits):
    """Replaces every quantizable child (recursively) by its FakeQuantInput, in place."""
    for name, child in module.named_children():
        if child in ranges:
            setattr(module, name, FakeQuantInput(child, ranges[child], child is first, bits))
        else:
            wrap_layers(child, ranges, first, bits)


def fake_quant_model(make, calibration, bits):
    """The architecture fake-quantized at W<bits>A<bits>, channels_last, traced and frozen."""
    model = make().eval()
    fold_batch_norms(model)
    ranges = input_ranges(model, calibration)
    first = quantizable_layers(model)[0]
    for layer in ranges:
        quantize_weights_per_kernel(layer, bits)
    wrap_layers(model, ranges, first, bits)
    model = model.to(memory_format=torch.channels_last)
    example = calibration.contiguous(memory_format=torch.channels_last)
    # Freezing merges the identical fake-quant of one value read by two layers (a resnet8 block's
    # conv and projection), so that value is quantized once, as mpsearch does per (value, bits).
    with torch.no_grad():
        return torch.jit.freeze(torch.jit.trace(model, example))


def timed_passes(model, images, batch, runs):
    """images/s of `runs` passes over `images` after one warm-up pass (excluded: the JIT's
    profiling runs and first allocations happen there)."""
    rates = []
    with torch.no_grad():
        for run in range(runs + 1):
            start = time.perf_counter()
            for i in range(0, len(images), batch):
                model(images[i:i + batch])
            if run > 0:
                rates.append(len(images) / (time.perf_counter() - start))
    return rates


def measure_float_train(names, images, args, log):
    test = torch.randn(images, 1, 28, 28)
    train = torch.randn(args.train_images, 1, 28, 28)
    labels = torch.randint(0, 10, (args.train_images,))
    models = {}
    for name in names:
        model = ARCHS[name]()
        ips = inference_images_per_second(model, test, BATCH, args.runs)
        epoch = train_epoch_seconds(model, train, labels, 128)
        models[name] = {"eval_images_per_second": round(ips),
                        "train_epoch_seconds_60k": round(epoch, 1)}
        print(f"{name:15s} eval {ips:8.0f} images/s   train epoch (60k) {epoch:6.1f} s",
              file=log, flush=True)
    return models


def measure_fake_w4a4(names, images, args, log):
    test = torch.randn(images, 1, 28, 28).contiguous(memory_format=torch.channels_last)
    calibration = torch.randn(BATCH, 1, 28, 28)
    models = {}
    for name in names:
        model = fake_quant_model(ARCHS[name], calibration, BITS)
        rates = timed_passes(model, test, BATCH, args.runs)
        ips = statistics.median(rates)
        models[name] = {"fake_w4a4_images_per_second": ips, "runs_images_per_second": rates}
        print(f"{name:15s} fake-quant W4A4 {ips:8.0f} images/s", file=log, flush=True)
    return models


def write_json(results, out):
    """To `out` through a temporary file and a rename, or to stdout when `out` is '-'."""
    if out == "-":
        json.dump(results, sys.stdout, indent=2)
        sys.stdout.write("\n")
        return
    with open(out + ".tmp", "w") as f:
        json.dump(results, f, indent=2)
    os.replace(out + ".tmp", out)


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", "--json", dest="out", required=True,
                        help="JSON output file, '-' for stdout")
    parser.add_argument("--measure", choices=["float_train", "fake_w4a4"], default="float_train")
    parser.add_argument("--models", default=",".join(ARCHS),
                        help="comma-separated subset of " + ", ".join(ARCHS))
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--images", type=int, default=10000, help="images per inference pass")
    parser.add_argument("--train-images", type=int, default=12800)
    args = parser.parse_args()
    unknown = [n for n in args.models.split(",") if n not in ARCHS]
    if unknown:
        parser.error(f"unknown model(s) {', '.join(unknown)}; known: {', '.join(ARCHS)}")
    if args.runs < 1 or args.images < 1:
        parser.error("--runs and --images must be positive")
    return args


def main():
    args = parse_args()
    torch.set_num_threads(2)
    torch.manual_seed(0)
    # With the JSON on stdout, progress lines go to stderr.
    log = sys.stderr if args.out == "-" else sys.stdout
    names = args.models.split(",")
    results = {"torch_version": torch.__version__, "threads": torch.get_num_threads()}
    if args.measure == "fake_w4a4":
        results.update({"measure": "fake_w4a4", "batch": BATCH, "images": args.images,
                        "runs": args.runs, "memory_format": "channels_last", "jit": "trace + freeze",
                        "weights": "fake-quantized once before tracing, per output channel",
                        "activations": "per tensor, range = max over one calibration batch of 256"})
        results["models"] = measure_fake_w4a4(names, args.images, args, log)
    else:
        results["models"] = measure_float_train(names, args.images, args, log)
    write_json(results, args.out)


if __name__ == "__main__":
    main()
