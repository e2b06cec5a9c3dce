#!/usr/bin/env python3
"""The one-layer neighbourhood of a uniform policy: is it a local optimum of accuracy?

For every quantizable layer (or those of --layers) and every bit-width b of --bits, the uniform policy --base with that
one layer's weights at b (activations kept), then with its activations at b (weights kept), is
scored by `mpsearch eval` on the first --validation-images validation images and on the test split
(the first --test-images, default all), integer path, the run's default quantizers (`uniform` weights, `max` calibration) unless
--quantizer / --calibration-method say otherwise. The report lists every move with its relative
BitOPs and its change of validation accuracy and loss against the base, and names the moves that
raise validation accuracy: when none at or below the base's BitOPs does, no single-layer
reallocation beats the uniform policy under its own budget, which bounds what a search policy can
find near it (docs/policies.md, bayesian_bits on lenet5).

    python3 bench/neighbourhood.py --model models/lenet5.onnx --base W4A4 \\
        --out bench/results/<date>-lenet5-neighbourhood

Writes report.md and results.json into --out (temporary files, then renamed). Needs only the
standard library and an mpsearch build (--mpsearch, default build/mpsearch).
"""
import argparse
import json
import os
import re
import shlex
import subprocess
import sys
import tempfile


def run_eval(args, extra):
    cmd = [args.mpsearch, "eval", "--model", args.model, "--json",
           "--quantizer", args.quantizer, "--calibration-method", args.calibration_method] + extra
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        sys.exit(f"neighbourhood: {' '.join(map(shlex.quote, cmd))} failed:\n{done.stderr.strip()}")
    return json.loads(done.stdout)


def score(args, policy_file):
    """Validation (first N images) and test figures of one policy file."""
    val = run_eval(args, ["--policy", policy_file, "--split", "validation",
                          "--limit", str(args.validation_images)])
    limit = ["--limit", str(args.test_images)] if args.test_images else []
    test = run_eval(args, ["--policy", policy_file, "--split", "test"] + limit)
    return {"relative_bitops": val["relative_bitops"], "validation_accuracy": val["accuracy"],
            "validation_loss": val["loss"], "test_accuracy": test["accuracy"]}


def split_policy(text):
    """The base policy file as (head up to `layers:`, [(layer, weight bits, activation bits)], tail)."""
    lines = text.splitlines()
    start = lines.index("layers:") + 1
    end = start
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    layers, current = [], None
    for line in lines[start:end]:
        if m := re.fullmatch(r"  (\S+):", line):
            current = [m.group(1), None, None]
            layers.append(current)
        elif m := re.fullmatch(r"    weight_bits: (\d+)", line):
            current[1] = int(m.group(1))
        elif m := re.fullmatch(r"    activation_bits: (\d+)", line):
            current[2] = int(m.group(1))
    if not layers or any(w is None or a is None for _, w, a in layers):
        sys.exit("neighbourhood: the base policy file has no per-layer bits (docs/policy-format.md)")
    # The metrics of the base evaluation do not describe the moves: drop them.
    tail = [l for l in lines[end:] if not l.startswith("metrics:") and not l.startswith("  ")]
    return "\n".join(lines[:start]), layers, "\n".join(tail)


def policy_text(head, layers, tail):
    body = "".join(f"  {n}:\n    activation_bits: {a}\n    weight_bits: {w}\n" for n, w, a in layers)
    return head + "\n" + body + tail + "\n"


def write_atomically(path, text):
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path) or ".", prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def report(args, command, base, moves):
    b = base["score"]
    out = [f"# One-layer neighbourhood of uniform {args.base}: {os.path.basename(args.model)}", "",
           f"Command: `{command}`", "",
           f"Quantizers: weights `{args.quantizer}`, activations `{args.calibration_method}`, "
           f"integer path. Validation: the first {args.validation_images} validation images; "
           + (f"test: the first {args.test_images} test images." if args.test_images
              else "test: the whole test split."), "",
           f"Base uniform {args.base}: relative BitOPs {b['relative_bitops']:.6g}, validation "
           f"{b['validation_accuracy']:.2f} % (loss {b['validation_loss']:.4f}), test "
           f"{b['test_accuracy']:.2f} %.", "",
           "| layer | W | A | relative BitOPs | validation (%) | change | validation loss | change "
           "| test (%) |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for m in moves:
        s = m["score"]
        out.append(f"| {m['layer']} | {m['weight_bits']} | {m['activation_bits']} | "
                   f"{s['relative_bitops']:.6g} | {s['validation_accuracy']:.2f} | "
                   f"{s['validation_accuracy'] - b['validation_accuracy']:+.2f} | "
                   f"{s['validation_loss']:.4f} | {s['validation_loss'] - b['validation_loss']:+.4f} | "
                   f"{s['test_accuracy']:.2f} |")
    better = [m for m in moves if m["score"]["validation_accuracy"] > b["validation_accuracy"]]
    cheap = [m for m in better if m["score"]["relative_bitops"] <= b["relative_bitops"]]
    name = lambda m: f"{m['layer']} W{m['weight_bits']}A{m['activation_bits']}"
    out += ["", f"Moves that raise validation accuracy: {len(better)} of {len(moves)}"
            + (f" ({', '.join(map(name, better))})" if better else "") + "; of those at or below "
            f"the base's BitOPs: {len(cheap)}" + (f" ({', '.join(map(name, cheap))})" if cheap else "")
            + "."]
    return "\n".join(out) + "\n"


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", required=True, help="ONNX model file")
    p.add_argument("--base", default="W4A4", help="uniform policy, e.g. W4A4")
    p.add_argument("--bits", default="2,3,4,6,8", help="bit-widths each layer moves to")
    p.add_argument("--layers", default="", help="comma-separated layers to move (default all)")
    p.add_argument("--validation-images", type=int, default=5000)
    p.add_argument("--test-images", type=int, default=0, help="first N test images (0: all)")
    p.add_argument("--quantizer", default="uniform", help="weight quantizer (mpsearch eval)")
    p.add_argument("--calibration-method", default="max", help="activation calibration")
    p.add_argument("--mpsearch", default="build/mpsearch")
    p.add_argument("--out", required=True, help="directory for report.md and results.json")
    args = p.parse_args()
    command = "python3 bench/neighbourhood.py " + " ".join(map(shlex.quote, sys.argv[1:]))
    bits = [int(b) for b in args.bits.split(",")]

    with tempfile.TemporaryDirectory() as work:
        base_file = os.path.join(work, "base.yaml")
        run_eval(args, ["--uniform", args.base, "--split", "validation", "--limit", "1",
                        "--write-policy", base_file])
        head, layers, tail = split_policy(open(base_file).read())
        base = {"score": score(args, base_file)}
        moves, move_file = [], os.path.join(work, "move.yaml")
        chosen = args.layers.split(",") if args.layers else [l[0] for l in layers]
        unknown = set(chosen) - {l[0] for l in layers}
        if unknown:
            sys.exit(f"neighbourhood: {args.model} has no quantizable layer "
                     f"{', '.join(sorted(unknown))}; its layers: {', '.join(l[0] for l in layers)}")
        for i, (name, w0, a0) in enumerate(layers):
            if name not in chosen:
                continue
            for w, a in [(b, a0) for b in bits if b != w0] + [(w0, b) for b in bits if b != a0]:
                moved = [list(l) for l in layers]
                moved[i][1:] = [w, a]
                with open(move_file, "w") as f:
                    f.write(policy_text(head, moved, tail))
                moves.append({"layer": name, "weight_bits": w, "activation_bits": a,
                              "score": score(args, move_file)})
                print(f"{name} W{w}A{a}: validation {moves[-1]['score']['validation_accuracy']:.2f} %",
                      file=sys.stderr, flush=True)

    results = {"command": command, "model": args.model, "base": args.base, "bits": bits,
               "quantizer": args.quantizer, "calibration_method": args.calibration_method,
               "validation_images": args.validation_images, "base_score": base["score"],
               "moves": moves}
    os.makedirs(args.out, exist_ok=True)
    write_atomically(os.path.join(args.out, "results.json"), json.dumps(results, indent=1) + "\n")
    write_atomically(os.path.join(args.out, "report.md"), report(args, command, base, moves))


if __name__ == "__main__":
    main()
