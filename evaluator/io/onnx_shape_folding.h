#pragma once
// Constant folding of the shape computations exporters write in front of Reshape and Slice
// (PyTorch's x.chunk(2, dim=1) becomes Shape -> Gather -> Add -> Div -> Mul -> Slice): the
// importer evaluates them once, at import, on the per-image shapes it knows, and the consumers
// read the results as constants.
//
// A ShapeValue is an integer tensor (rank 0 or 1 in practice) some of whose entries may stand for
// the batch size, which is unknown at import. Those entries move through Gather, Slice, Concat,
// Unsqueeze, Squeeze, Cast and Identity unchanged; arithmetic on them is refused. Written out as
// a constant, a batch entry is 0, which Reshape (allowzero = 0) reads as "keep the batch".
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mps {

struct ShapeValue {
    std::vector<int64_t> dims;   // tensor shape ({} = scalar)
    std::vector<int64_t> values; // row-major
    std::vector<bool> batch;     // per entry: stands for the batch size
};

// The value of Shape on an activation of per-image shape `per_image`: [batch, per_image...].
ShapeValue shape_of_activation(const std::vector<int64_t>& per_image);

// Whether fold_shape_node() evaluates `op_type` (given constant inputs).
bool is_shape_op(const std::string& op_type);

// Evaluates one node of a shape computation. `inputs` are the node's inputs in order (nullptr for
// an absent optional input; for Shape, the value of shape_of_activation()). Throws mps::Error
// saying what cannot be evaluated (the importer adds the file and node).
ShapeValue fold_shape_node(const onnx::NodeProto& node, int64_t opset,
                           const std::vector<const ShapeValue*>& inputs);

} // namespace mps
