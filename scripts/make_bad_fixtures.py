#!/usr/bin/python3
"""Writes the small ONNX files the bad-input CLI tests use (tests/data/bad/).

Run with Debian's python3-onnx: /usr/bin/python3 scripts/make_bad_fixtures.py
"""
import os

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OUT = os.path.join(os.path.dirname(__file__), "..", "tests", "data", "bad")


def conv_model(in_shape, extra_nodes=(), name="conv_model"):
    """Conv(3x3) -> GlobalAveragePool -> Flatten -> Gemm on an input of shape [N, *in_shape]."""
    rng = np.random.default_rng(0)
    c = in_shape[0]
    w = numpy_helper.from_array(rng.standard_normal((4, c, 3, 3)).astype(np.float32), "w")
    fw = numpy_helper.from_array(rng.standard_normal((10, 4)).astype(np.float32), "fw")
    fb = numpy_helper.from_array(np.zeros(10, np.float32), "fb")
    nodes = [
        helper.make_node("Conv", ["input", "w"], ["c"], name="conv1", pads=[1, 1, 1, 1]),
        *extra_nodes,
        helper.make_node("GlobalAveragePool", ["c2" if extra_nodes else "c"], ["g"], name="gap"),
        helper.make_node("Flatten", ["g"], ["f"], name="flatten", axis=1),
        helper.make_node("Gemm", ["f", "fw", "fb"], ["logits"], name="fc", transB=1),
    ]
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", *in_shape])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
        [w, fw, fb])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])


def main():
    os.makedirs(OUT, exist_ok=True)
    # A CIFAR-shaped model: its 3x32x32 input does not match Fashion-MNIST's 1x28x28 images.
    onnx.save(conv_model([3, 32, 32], name="cifar_shaped"), os.path.join(OUT, "input_3x32x32.onnx"))
    # An operator mpsearch does not support (LeakyRelu) in the middle of the network.
    leaky = helper.make_node("LeakyRelu", ["c"], ["c2"], name="act_leaky", alpha=0.1)
    onnx.save(conv_model([1, 28, 28], [leaky], name="unsupported"),
              os.path.join(OUT, "unsupported_op.onnx"))
    # A valid small model on 1x28x28, used to make truncated copies at test time.
    onnx.save(conv_model([1, 28, 28], name="tiny"), os.path.join(OUT, "tiny.onnx"))


if __name__ == "__main__":
    main()
