#pragma once
// The channel ops of the IR written as standard ONNX nodes, for both exporters (onnx_io.h's float
// export and onnx_export_quantized.h's QDQ export); the importer reads each form back as the
// same op:
//   channel_affine  -> BatchNormalization: scale = weight, B = bias, mean 0, variance 1,
//                      epsilon 0 (so y = weight * x + bias exactly)
//   channel_shuffle -> Reshape to [0, groups, C / groups, H, W], Transpose perm [0, 2, 1, 3, 4],
//                      Reshape to [0, C, H, W] (PyTorch's channel_shuffle; 0 keeps the batch)
//   channel_slice   -> Slice with starts [channel_begin], ends [channel_end], axes [1]
// The first ONNX node carries the IR node's name, the others that name with a suffix.
#include "evaluator/io/onnx_builder.h"
#include "evaluator/ir/graph.h"

#include <string>
#include <vector>

namespace mps {

bool is_channel_op(Op op);

// Writes `node` (a channel op) reading ONNX value `input`, whose per-image shape is `in_shape`,
// into the already reserved value `output`.
void emit_channel_op(OnnxBuilder& b, const Node& node, const std::vector<int64_t>& in_shape,
                     const std::string& input, const std::string& output);

} // namespace mps
