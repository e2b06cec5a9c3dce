#pragma once
// ONNX import and export of the model IR (evaluator/ir/graph.h).
//
// Import reads an ONNX model (opsets 11..17; the older Clip-with-attributes form of opsets 6..10 is
// read too) whose single non-initializer graph input is [N, C, H, W] float32 (N may be symbolic),
// and maps it onto the IR:
//   Conv (2-D, any group/stride/pads/dilations, auto_pad NOTSET/VALID/SAME_*) -> conv
//   Gemm (transA = 0, alpha = beta = 1), MatMul [+ Add of a 1-D constant]   -> fully_connected
//     (weight transposed to [out, in] where ONNX has [in, out]; no C / no Add: empty bias)
//   BatchNormalization (inference mode)                                      -> batch_norm
//   Relu, Clip (min/max as attributes, inputs, or missing = -inf/+inf)       -> relu, clip
//   MaxPool, AveragePool (ceil_mode as PyTorch's output size, by more end padding; refused for
//   an AveragePool with count_include_pad=1 where it adds a window), GlobalAveragePool, Add
//   ReduceMean over axes {2, 3} -> global_average_pool (+ flatten without keepdims)
//   Concat (axis 1 or -3, two or more inputs; one input is removed)         -> concat
//   Mul of two activations (same shape, or [N, C, 1, 1] by [N, C, H, W])     -> mul
//   Sigmoid, HardSigmoid (alpha, beta; defaults 0.2, 0.5), HardSwish         -> sigmoid,
//     hard_sigmoid, hard_swish
//   Flatten (axis 1), Reshape to 2-D [*, per-image size]                    -> flatten
//   Reshape [N, g, C/g, H, W] -> Transpose [0, 2, 1, 3, 4] -> Reshape [N, C, H, W]
//                                                                            -> channel_shuffle
//   Slice along channels (step 1), Split along channels (one per output)    -> channel_slice
//   Shape computations on integer constants (Shape, Gather, Slice, Concat, Unsqueeze, Squeeze,
//   Cast, Add, Sub, Mul, Div): evaluated at import (onnx_shape_folding.h)
//   Identity, Dropout, Pad by zero everywhere, a trailing Softmax: removed (the graph outputs
//   logits); an Identity of a constant is that constant (PyTorch feeds shared equal tensors to
//   convs that way)
//   Constant: read as a value (weights, Clip bounds, Reshape shapes)
// Everything else is an mps::Error naming the file, the node, its op type and the supported ops.
// Node names come from the ONNX node names; unnamed nodes are named "<OpType>_<index in the ONNX
// node list>", duplicates get "_1", "_2", ... appended. Weights are float32 (raw_data, float_data,
// or external data next to the model file). Nodes that do not contribute to the output are dropped.
// The result is topologically sorted and has passed infer_shapes().
//
// Export writes opset 13 (14 when the graph has a hard_swish: HardSwish is opset 14; ir_version 7,
// producer "mpsearch"): graph input "input" [batch, C, H, W], output "logits" [batch, classes],
// one ONNX node per IR node with the same name (conv -> Conv, fully_connected -> Gemm transB=1,
// batch_norm -> BatchNormalization, clip -> Clip with min/max initializer inputs, flatten ->
// Flatten axis 1, concat -> Concat axis 1, hard_sigmoid -> HardSigmoid with alpha and beta; the
// channel ops as onnx_channel_ops.h writes them). Parameters are stored as raw float32 initializers
// named "<node>.weight", "<node>.bias", "<node>.mean", "<node>.var", so import(export(g)) == g
// bit for bit (with the graph input and output values renamed "input" and "logits").
#include "evaluator/ir/graph.h"

#include <string>

namespace mps {

// Throws mps::Error naming the file and the problem ("x.onnx: cannot open ...", "x.onnx: not a
// valid ONNX model (protobuf parse failed)", unsupported ops, non-float weights, bad shapes).
Graph import_onnx(const std::string& path);
// The same from serialized bytes; `name_for_errors` stands for the file in messages. External
// tensor data cannot be resolved here (there is no directory) and is an error.
Graph import_onnx_bytes(const std::string& bytes, const std::string& name_for_errors);

// Writes atomically (a temporary file next to `path`, then rename). Throws mps::Error if the graph
// has no shapes that can be inferred or the file cannot be written.
void export_onnx(const Graph& graph, const std::string& path);
std::string export_onnx_bytes(const Graph& graph);

} // namespace mps
