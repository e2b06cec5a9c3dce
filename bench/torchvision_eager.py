#!/usr/bin/python3
"""PyTorch eager float32 images/s of the torchvision families' fixtures (the same reduced-width
models as tests/data/torchvision/, rebuilt by scripts/make_torchvision_fixtures.py's seeded
constructors), for bench/torchvision_bench.sh: 2 threads, no_grad, batch 256, the fixture's images
repeated to --images, resized to the family's input size; one warm-up pass, median of --runs.
Prints one line per family: "<family> <images/s>".
    /usr/bin/python3 bench/torchvision_eager.py [--images 2000] [--runs 5] [--only NAME]
"""
import argparse
import os
import statistics
import sys
import time

import numpy as np
import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "scripts"))
import make_torchvision_fixtures as fixtures  # noqa: E402


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=2000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--only", default="")
    args = ap.parse_args()
    torch.set_num_threads(2)
    data = np.load(os.path.join(os.path.dirname(__file__), "..", "tests", "data", "torchvision",
                                "images.npz"))["images"]
    data = np.concatenate([data] * ((args.images + len(data) - 1) // len(data)))[:args.images]
    for name, (make, size) in fixtures.families().items():
        if args.only and name != args.only:
            continue
        torch.manual_seed(0)
        model = make().eval()
        x = fixtures.model_input(data, size)
        rates = []
        with torch.no_grad():
            for run in range(args.runs + 1):
                start = time.perf_counter()
                for s in range(0, len(x), 256):
                    model(x[s:s + 256])
                if run:
                    rates.append(len(x) / (time.perf_counter() - start))
        print(name, round(statistics.median(rates)), flush=True)


if __name__ == "__main__":
    main()
