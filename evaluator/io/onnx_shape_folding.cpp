#include "evaluator/io/onnx_shape_folding.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <functional>
#include <limits>
#include <set>

namespace mps {
namespace {

const onnx::AttributeProto* find_attribute(const onnx::NodeProto& node, const std::string& name) {
    for (const auto& a : node.attribute())
        if (a.name() == name) return &a;
    return nullptr;
}

int64_t int_attribute(const onnx::NodeProto& node, const std::string& name, int64_t fallback) {
    const auto* a = find_attribute(node, name);
    return a ? a->i() : fallback;
}

std::optional<std::vector<int64_t>> ints_attribute(const onnx::NodeProto& node,
                                                   const std::string& name) {
    const auto* a = find_attribute(node, name);
    if (!a) return std::nullopt;
    return std::vector<int64_t>(a->ints().begin(), a->ints().end());
}

// Input `i`, which the node must have.
const ShapeValue& input(const std::vector<const ShapeValue*>& inputs, size_t i) {
    if (i >= inputs.size() || !inputs[i])
        throw Error("input " + std::to_string(i) + " is missing");
    return *inputs[i];
}

// The values of input `i` (absent: nullopt), or else of attribute `name`.
std::optional<std::vector<int64_t>> list_argument(const onnx::NodeProto& node,
                                                  const std::vector<const ShapeValue*>& inputs,
                                                  size_t i, const std::string& name) {
    if (i < inputs.size() && inputs[i]) return inputs[i]->values;
    return ints_attribute(node, name);
}

int64_t normalized_axis(int64_t axis, int64_t rank) {
    if (axis < -rank || axis >= rank)
        throw Error("axis " + std::to_string(axis) + " is outside a tensor of rank " +
                    std::to_string(rank));
    return axis < 0 ? axis + rank : axis;
}

void expect_rank_at_most_1(const ShapeValue& v, const char* what) {
    if (v.dims.size() > 1)
        throw Error(std::string(what) + " of a tensor of rank " + std::to_string(v.dims.size()) +
                    " is not folded (shape computations are 1-D)");
}

// Entries [begin, end) of a 1-D value, by step.
ShapeValue pick(const ShapeValue& v, const std::vector<int64_t>& indices) {
    ShapeValue out;
    for (int64_t i : indices) {
        out.values.push_back(v.values.at(static_cast<size_t>(i)));
        out.batch.push_back(v.batch.at(static_cast<size_t>(i)));
    }
    out.dims = {static_cast<int64_t>(indices.size())};
    return out;
}

ShapeValue fold_shape(const onnx::NodeProto& node, const ShapeValue& shape) {
    const int64_t rank = static_cast<int64_t>(shape.values.size());
    auto clamp = [&](int64_t i) { return std::clamp(i < 0 ? i + rank : i, int64_t{0}, rank); };
    const int64_t begin = clamp(int_attribute(node, "start", 0));
    const int64_t end = clamp(int_attribute(node, "end", rank));
    std::vector<int64_t> indices;
    for (int64_t i = begin; i < end; ++i) indices.push_back(i);
    return pick(shape, indices);
}

ShapeValue fold_gather(const onnx::NodeProto& node, const std::vector<const ShapeValue*>& in) {
    const ShapeValue& data = input(in, 0);
    const ShapeValue& index = input(in, 1);
    expect_rank_at_most_1(data, "Gather");
    if (data.dims.size() != 1 || normalized_axis(int_attribute(node, "axis", 0), 1) != 0)
        throw Error("only Gather along axis 0 of a 1-D value is folded");
    const int64_t size = data.dims[0];
    std::vector<int64_t> indices;
    for (int64_t i : index.values) {
        if (i < -size || i >= size)
            throw Error("index " + std::to_string(i) + " is outside " + std::to_string(size) +
                        " values");
        indices.push_back(i < 0 ? i + size : i);
    }
    ShapeValue out = pick(data, indices);
    out.dims = index.dims;
    return out;
}

ShapeValue fold_slice(const onnx::NodeProto& node, int64_t opset,
                      const std::vector<const ShapeValue*>& in) {
    const ShapeValue& data = input(in, 0);
    if (data.dims.size() != 1) throw Error("only Slice of a 1-D value is folded");
    const bool attributes = opset < 10;
    const auto starts = attributes ? ints_attribute(node, "starts") : list_argument(node, in, 1, "");
    const auto ends = attributes ? ints_attribute(node, "ends") : list_argument(node, in, 2, "");
    const auto axes = list_argument(node, in, attributes ? 99 : 3, "axes");
    const auto steps = attributes ? std::nullopt : list_argument(node, in, 4, "");
    if (!starts || !ends || starts->size() != 1 || ends->size() != 1)
        throw Error("Slice of a 1-D value needs one start and one end");
    if (axes && (axes->size() != 1 || normalized_axis(axes->at(0), 1) != 0))
        throw Error("Slice of a 1-D value must be along axis 0");
    const int64_t step = steps ? steps->at(0) : 1;
    if (step == 0) throw Error("Slice step 0");
    const int64_t size = data.dims[0];
    auto bound = [&](int64_t i, int64_t low, int64_t high) {
        return std::clamp(i < 0 ? i + size : i, low, high);
    };
    const int64_t begin = step > 0 ? bound(starts->at(0), 0, size) : bound(starts->at(0), -1, size - 1);
    const int64_t end = step > 0 ? bound(ends->at(0), 0, size) : bound(ends->at(0), -1, size - 1);
    std::vector<int64_t> indices;
    for (int64_t i = begin; step > 0 ? i < end : i > end; i += step) indices.push_back(i);
    return pick(data, indices);
}

ShapeValue fold_concat(const onnx::NodeProto& node, const std::vector<const ShapeValue*>& in) {
    ShapeValue out;
    for (size_t i = 0; i < in.size(); ++i) {
        const ShapeValue& part = input(in, i);
        if (part.dims.size() != 1) throw Error("only Concat of 1-D values is folded");
        normalized_axis(int_attribute(node, "axis", 0), 1);
        out.values.insert(out.values.end(), part.values.begin(), part.values.end());
        out.batch.insert(out.batch.end(), part.batch.begin(), part.batch.end());
    }
    out.dims = {static_cast<int64_t>(out.values.size())};
    return out;
}

// Unsqueeze and Squeeze change only the dims.
ShapeValue fold_unsqueeze(const onnx::NodeProto& node, int64_t opset,
                          const std::vector<const ShapeValue*>& in) {
    ShapeValue out = input(in, 0);
    const auto axes = opset >= 13 ? list_argument(node, in, 1, "") : ints_attribute(node, "axes");
    if (!axes) throw Error("Unsqueeze has no axes");
    const int64_t rank = static_cast<int64_t>(out.dims.size() + axes->size());
    std::set<int64_t> inserted;
    for (int64_t a : *axes) inserted.insert(normalized_axis(a, rank));
    std::vector<int64_t> dims;
    for (int64_t d = 0, from = 0; d < rank; ++d)
        dims.push_back(inserted.count(d) ? 1 : out.dims.at(static_cast<size_t>(from++)));
    out.dims = dims;
    return out;
}

ShapeValue fold_squeeze(const onnx::NodeProto& node, int64_t opset,
                        const std::vector<const ShapeValue*>& in) {
    ShapeValue out = input(in, 0);
    const auto axes = opset >= 13 ? list_argument(node, in, 1, "") : ints_attribute(node, "axes");
    const int64_t rank = static_cast<int64_t>(out.dims.size());
    std::set<int64_t> removed;
    if (axes)
        for (int64_t a : *axes) removed.insert(normalized_axis(a, rank));
    std::vector<int64_t> dims;
    for (int64_t d = 0; d < rank; ++d) {
        const bool drop = axes ? removed.count(d) > 0 : out.dims[static_cast<size_t>(d)] == 1;
        if (drop && out.dims[static_cast<size_t>(d)] != 1)
            throw Error("Squeeze of axis " + std::to_string(d) + " whose size is not 1");
        if (!drop) dims.push_back(out.dims[static_cast<size_t>(d)]);
    }
    out.dims = dims;
    return out;
}

// Add, Sub, Mul, Div of equal shapes or against a single value; ONNX's integer Div truncates.
ShapeValue fold_arithmetic(const std::string& op, const std::vector<const ShapeValue*>& in) {
    const ShapeValue& a = input(in, 0);
    const ShapeValue& b = input(in, 1);
    const size_t count = std::max(a.values.size(), b.values.size());
    if ((a.values.size() != count && a.values.size() != 1) ||
        (b.values.size() != count && b.values.size() != 1))
        throw Error(op + " of " + std::to_string(a.values.size()) + " by " +
                    std::to_string(b.values.size()) + " values is not folded");
    ShapeValue out = a.values.size() == count ? a : b;
    for (size_t i = 0; i < count; ++i) {
        const size_t ia = a.values.size() == 1 ? 0 : i, ib = b.values.size() == 1 ? 0 : i;
        if (a.batch[ia] || b.batch[ib])
            throw Error(op + " computes with the batch size, which is not known at import; "
                             "export the model with a fixed batch size");
        const int64_t x = a.values[ia], y = b.values[ib];
        if (op == "Div" && y == 0) throw Error("Div by zero");
        out.values[i] = op == "Add" ? x + y : op == "Sub" ? x - y : op == "Mul" ? x * y : x / y;
        out.batch[i] = false;
    }
    return out;
}

ShapeValue fold_cast(const onnx::NodeProto& node, const std::vector<const ShapeValue*>& in) {
    const int64_t to = int_attribute(node, "to", 0);
    if (to != onnx::TensorProto::INT64 && to != onnx::TensorProto::INT32)
        throw Error("Cast of a shape to type " + std::to_string(to) +
                    " is not folded (only to INT64 or INT32)");
    return input(in, 0);
}

} // namespace

ShapeValue shape_of_activation(const std::vector<int64_t>& per_image) {
    ShapeValue v;
    v.values.push_back(0);
    v.batch.push_back(true);
    for (int64_t d : per_image) {
        v.values.push_back(d);
        v.batch.push_back(false);
    }
    v.dims = {static_cast<int64_t>(v.values.size())};
    return v;
}

bool is_shape_op(const std::string& op_type) {
    static const std::set<std::string> ops = {"Shape", "Gather",  "Slice", "Concat", "Unsqueeze",
                                              "Squeeze", "Cast",  "Add",   "Sub",    "Mul",
                                              "Div",   "Identity"};
    return ops.count(op_type) > 0;
}

ShapeValue fold_shape_node(const onnx::NodeProto& node, int64_t opset,
                           const std::vector<const ShapeValue*>& inputs) {
    const std::string& op = node.op_type();
    if (op == "Shape") return fold_shape(node, input(inputs, 0));
    if (op == "Gather") return fold_gather(node, inputs);
    if (op == "Slice") return fold_slice(node, opset, inputs);
    if (op == "Concat") return fold_concat(node, inputs);
    if (op == "Unsqueeze") return fold_unsqueeze(node, opset, inputs);
    if (op == "Squeeze") return fold_squeeze(node, opset, inputs);
    if (op == "Cast") return fold_cast(node, inputs);
    if (op == "Identity") return input(inputs, 0);
    if (op == "Add" || op == "Sub" || op == "Mul" || op == "Div")
        return fold_arithmetic(op, inputs);
    throw Error("op type '" + op + "' is not a shape computation that can be folded");
}

} // namespace mps
