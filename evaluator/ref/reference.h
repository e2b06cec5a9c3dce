#pragma once
// Naive reference implementations of every graph op: plain loops over NCHW tensors, accumulating
// in double. They are the ground truth that the oneDNN engines and the trainer are tested
// against, so they favour being obviously correct over being fast.
//
// Conventions (ONNX semantics):
//   - activations are NCHW with the batch dimension ({N, C, H, W}), fully connected inputs and
//     logits are {N, features};
//   - conv output size = (in + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride + 1;
//     padded positions read as zero;
//   - max_pool ignores padded positions (they never win);
//   - average_pool divides by kernel_h * kernel_w when count_include_pad, else by the number of
//     window positions that fall inside the image;
//   - parameters and attributes are taken from the Node.
// Shape mismatches throw mps::Error naming the node.
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"

namespace mps {

Tensor reference_conv(const Tensor& src, const Node& node);
Tensor reference_fully_connected(const Tensor& src, const Node& node);
Tensor reference_batch_norm(const Tensor& src, const Node& node);
Tensor reference_relu(const Tensor& src);
Tensor reference_clip(const Tensor& src, const Node& node);
Tensor reference_max_pool(const Tensor& src, const Node& node);
Tensor reference_average_pool(const Tensor& src, const Node& node);
Tensor reference_global_average_pool(const Tensor& src); // {N, C, H, W} -> {N, C, 1, 1}
Tensor reference_add(const Tensor& a, const Tensor& b);
Tensor reference_flatten(const Tensor& src);              // {N, ...} -> {N, rest}
// {N, Ci, H, W} inputs joined along channels, in order.
Tensor reference_concat(const std::vector<const Tensor*>& inputs);
Tensor reference_sigmoid(const Tensor& src);
Tensor reference_hard_sigmoid(const Tensor& src, float alpha, float beta);
Tensor reference_hard_swish(const Tensor& src); // x * hard_sigmoid(x) with alpha 1/6, beta 1/2
// Equal shapes, or an {N, C, 1, 1} scale (either operand) times {N, C, H, W}.
Tensor reference_mul(const Tensor& a, const Tensor& b);
// y = weight[c] * x + bias[c].
Tensor reference_channel_affine(const Tensor& src, const Node& node);
// Output channel k * groups + g is input channel g * (C / groups) + k.
Tensor reference_channel_shuffle(const Tensor& src, const Node& node);
// Input channels [channel_begin, channel_end).
Tensor reference_channel_slice(const Tensor& src, const Node& node);

// One node applied to its input values (as many as accepts_inputs() wants).
Tensor reference_node(const Node& node, const std::vector<const Tensor*>& inputs);

// Runs the whole graph on `input` ({N, C, H, W}, matching graph.input_shape per image) and
// returns the graph output as {N, classes}. Works on graphs with or without batch_norm and does
// not need infer_shapes().
Tensor reference_forward(const Graph& graph, const Tensor& input);

} // namespace mps
