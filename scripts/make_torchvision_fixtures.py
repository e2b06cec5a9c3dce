#!/usr/bin/python3
"""Exports reduced-width versions of the 14 torchvision 0.14 classification families to ONNX, with
PyTorch's predictions on Fashion-MNIST images, as the fixtures of tests/cli/torchvision_import.sh.

Each family keeps its own building blocks and export patterns (the operators torch.onnx writes for
it) but narrower layers, so that the files are small enough to commit (weights are random, seeded;
batch norms get random running statistics so that folding them is not the identity). The stem takes
one channel (Fashion-MNIST), the head has 10 classes.

Writes into --out (default tests/data/torchvision/):
  images.npz          the first 500 Fashion-MNIST test images (uint8, N x 1 x 28 x 28) and labels
  <family>.onnx       torch.onnx.export, opset 13, constant folding, eval mode
  <family>.json       input size, PyTorch's mean cross-entropy loss, predicted class and top-1/top-2
                      logit margin of every image

PyTorch's input is what mpsearch's preprocessing makes of the same bytes: p / 255, bilinear resize
of the 28 x 28 image to the family's input size (half-pixel centres, no antialiasing: what
`preprocess: {resize: S}` does), then (x - 0.2860) / 0.3530.

Usage: /usr/bin/python3 scripts/make_torchvision_fixtures.py [--data DIR] [--out DIR] [--only NAME]
Needs Debian's python3-torch and python3-torchvision (1.13 / 0.14); about a minute on 2 cores.
"""
import argparse
import gzip
import json
import os
import zipfile
import io
import sys

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
import torchvision.models as tvm

from make_pytorch_fixture import read_idx
from torchvision.models import efficientnet, regnet, resnet, convnext, mnasnet

# torchvision.models re-exports functions named like these modules
googlenet = sys.modules["torchvision.models.googlenet"]
vgg = sys.modules["torchvision.models.vgg"]
squeezenet = sys.modules["torchvision.models.squeezenet"]

MEAN, STD = 0.2860, 0.3530
COUNT = 500
OPSET = 13


def one_channel_stem(conv):
    """A copy of `conv` that reads one channel (the families' stems read three)."""
    return nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
                     conv.dilation, conv.groups, conv.bias is not None)


def narrow_resnet(block, layers, base):
    m = resnet.ResNet(block, layers, num_classes=10)
    m.inplanes = base
    m.conv1 = nn.Conv2d(1, base, 7, 2, 3, bias=False)
    m.bn1 = nn.BatchNorm2d(base)
    m.layer1 = m._make_layer(block, base, layers[0])
    m.layer2 = m._make_layer(block, 2 * base, layers[1], stride=2)
    m.layer3 = m._make_layer(block, 4 * base, layers[2], stride=2)
    m.layer4 = m._make_layer(block, 8 * base, layers[3], stride=2)
    m.fc = nn.Linear(8 * base * block.expansion, 10)
    return m


def narrow_googlenet():
    """GoogLeNet with every layer 1/8 as wide: its blocks are passed in, so they are scaled."""
    def conv(cin, cout, **kw):
        return googlenet.BasicConv2d(cin if cin <= 3 else cin // 8, cout // 8, **kw)

    def inception(cin, *channels, conv_block=None):
        return googlenet.Inception(cin // 8, *[c // 8 for c in channels], conv_block=conv_block)

    m = googlenet.GoogLeNet(num_classes=10, aux_logits=False, transform_input=False,
                            init_weights=True, blocks=[conv, inception, googlenet.InceptionAux])
    m.conv1.conv = one_channel_stem(m.conv1.conv)
    m.fc = nn.Linear(1024 // 8, 10)
    return m


def narrow_squeezenet():
    """SqueezeNet 1.0's layout with every Fire module 1/4 as wide."""
    fire = squeezenet.Fire
    m = squeezenet.SqueezeNet("1_0", num_classes=10)
    m.features = nn.Sequential(
        nn.Conv2d(1, 24, 7, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(24, 4, 16, 16), fire(32, 4, 16, 16), fire(32, 8, 32, 32),
        nn.MaxPool2d(3, 2, ceil_mode=True),
        fire(64, 8, 32, 32), fire(64, 12, 48, 48), fire(96, 12, 48, 48), fire(96, 16, 64, 64),
        nn.MaxPool2d(3, 2, ceil_mode=True), fire(128, 16, 64, 64))
    m.classifier[1] = nn.Conv2d(128, 10, 1)
    return m


def narrow_alexnet():
    m = tvm.AlexNet(num_classes=10)
    m.features = nn.Sequential(
        nn.Conv2d(1, 8, 11, 4, 2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(8, 16, 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
        nn.Conv2d(16, 24, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(24, 16, 3, padding=1), nn.ReLU(inplace=True),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2))
    m.classifier = nn.Sequential(
        nn.Dropout(), nn.Linear(16 * 6 * 6, 64), nn.ReLU(inplace=True),
        nn.Dropout(), nn.Linear(64, 64), nn.ReLU(inplace=True), nn.Linear(64, 10))
    return m


def narrow_vgg11_bn():
    cfg = [8, "M", 16, "M", 32, 32, "M", 64, 64, "M", 64, 64, "M"]
    m = vgg.VGG(vgg.make_layers(cfg, batch_norm=True), num_classes=10)
    m.features[0] = nn.Conv2d(1, 8, 3, padding=1)
    m.classifier = nn.Sequential(
        nn.Linear(64 * 7 * 7, 16), nn.ReLU(True), nn.Dropout(),
        nn.Linear(16, 16), nn.ReLU(True), nn.Dropout(), nn.Linear(16, 10))
    return m


def with_stem(m, path):
    """Replaces the conv at attribute path `path` (dotted, indices allowed) by a 1-channel one."""
    *parents, last = path.split(".")
    owner = m
    for p in parents:
        owner = owner[int(p)] if p.isdigit() else getattr(owner, p)
    old = owner[int(last)] if last.isdigit() else getattr(owner, last)
    new = one_channel_stem(old)
    if last.isdigit():
        owner[int(last)] = new
    else:
        setattr(owner, last, new)
    return m


def families():
    """name -> (constructor, input size). Sizes: the smallest the family's pooling supports from
    a 28 x 28 image (32), or 224 where the classifier's adaptive pooling needs 7 x 7 / 6 x 6."""
    setting, last = efficientnet._efficientnet_conf("efficientnet_b0", width_mult=0.25,
                                                   depth_mult=0.5)
    block = convnext.CNBlockConfig
    return {
        "resnet18": (lambda: narrow_resnet(resnet.BasicBlock, [2, 2, 2, 2], 8), 32),
        "resnet50": (lambda: narrow_resnet(resnet.Bottleneck, [3, 4, 6, 3], 4), 32),
        "mobilenet_v2": (lambda: with_stem(tvm.mobilenet_v2(num_classes=10, width_mult=0.25),
                                           "features.0.0"), 32),
        "mobilenet_v3_small": (lambda: with_stem(tvm.mobilenet_v3_small(
            num_classes=10, width_mult=0.25, reduced_tail=True), "features.0.0"), 32),
        "regnet_x_400mf": (lambda: with_stem(regnet.RegNet(
            regnet.BlockParams.from_init_params(depth=6, w_0=8, w_a=8.0, w_m=2.0,
                                                group_width=8),
            num_classes=10, stem_width=8), "stem.0"), 32),
        "mnasnet0_5": (lambda: with_stem(mnasnet.MNASNet(0.25, num_classes=10), "layers.0"), 32),
        "squeezenet1_0": (narrow_squeezenet, 32),
        "shufflenet_v2_x0_5": (lambda: with_stem(tvm.ShuffleNetV2(
            [4, 8, 4], [8, 16, 32, 64, 128], num_classes=10), "conv1.0"), 32),
        "densenet121": (lambda: with_stem(tvm.DenseNet(4, (6, 12, 24, 16), 8, 2, 0,
                                                       num_classes=10), "features.conv0"), 32),
        "googlenet": (narrow_googlenet, 32),
        "efficientnet_b0": (lambda: with_stem(efficientnet.EfficientNet(
            setting, 0.2, num_classes=10, last_channel=last), "features.0.0"), 32),
        "convnext_tiny": (lambda: with_stem(convnext.ConvNeXt(
            [block(8, 16, 1), block(16, 32, 1), block(32, 64, 1), block(64, None, 1)],
            num_classes=10), "features.0.0"), 32),
        "vgg11_bn": (narrow_vgg11_bn, 224),
        "alexnet": (narrow_alexnet, 224),
    }


def randomize_batch_norms(m, gen):
    for mod in m.modules():
        if isinstance(mod, nn.BatchNorm2d):
            c = mod.num_features
            mod.running_mean.copy_(torch.randn(c, generator=gen) * 0.1)
            mod.running_var.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            mod.weight.data.copy_(torch.rand(c, generator=gen) * 0.5 + 0.75)
            mod.bias.data.copy_(torch.randn(c, generator=gen) * 0.1)


def model_input(images, size):
    x = torch.from_numpy(images.astype(np.float32) / 255.0)
    if size != x.shape[-1]:
        x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False)
    return (x - MEAN) / STD


def export(name, make, size, images, labels, out):
    torch.manual_seed(0)
    m = make()
    randomize_batch_norms(m, torch.Generator().manual_seed(1))
    m.eval()
    x = model_input(images, size)
    with torch.no_grad():
        logits = m(x)
        loss = F.cross_entropy(logits, torch.from_numpy(labels.astype(np.int64))).item()
    top2 = logits.topk(2, dim=1)
    path = os.path.join(out, name + ".onnx")
    torch.onnx.export(m, x[:1], path, opset_version=OPSET, do_constant_folding=True,
                      input_names=["input"], output_names=["logits"])
    record = {
        "family": name, "input_size": size, "opset": OPSET, "images": len(labels),
        "loss": loss,
        "accuracy": float((top2.indices[:, 0].numpy() == labels).mean() * 100),
        "predictions": top2.indices[:, 0].tolist(),
        "margins": [round(float(v), 7) for v in (top2.values[:, 0] - top2.values[:, 1])],
    }
    with open(os.path.join(out, name + ".json"), "w") as f:
        json.dump(record, f)
    print(f"{name}: {os.path.getsize(path) // 1024} KiB, input {size}, loss {loss:.6f}, "
          f"min margin {min(record['margins']):.2e}")


def write_images(images, labels, path):
    buf = io.BytesIO()
    np.savez(buf, images=images, labels=labels.astype(np.int64))
    with open(path, "wb") as f:
        f.write(buf.getvalue())


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    ap.add_argument("--out", default="tests/data/torchvision")
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(2)
    os.makedirs(args.out, exist_ok=True)
    images = read_idx(os.path.join(args.data, "t10k-images-idx3-ubyte.gz"))[:COUNT, None]
    labels = read_idx(os.path.join(args.data, "t10k-labels-idx1-ubyte.gz"))[:COUNT]
    write_images(images, labels, os.path.join(args.out, "images.npz"))
    for name, (make, size) in families().items():
        if args.only and name != args.only:
            continue
        export(name, make, size, images, labels, args.out)


if __name__ == "__main__":
    main()
