#include "evaluator/io/onnx_channel_ops.h"

#include "evaluator/base/error.h"

namespace mps {

bool is_channel_op(Op op) {
    return op == Op::channel_affine || op == Op::channel_shuffle || op == Op::channel_slice;
}

namespace {

void emit_affine(OnnxBuilder& b, const Node& node, const std::string& input,
                 const std::string& output) {
    const std::vector<int64_t> dims{node.weight.numel()};
    const std::vector<float> zeros(node.weight.data.size(), 0.0f), ones(zeros.size(), 1.0f);
    auto* proto = b.add_node_to("BatchNormalization", node.name,
                                {input, b.add_float(node.name + ".weight", dims, node.weight.data),
                                 b.add_float(node.name + ".bias", dims, node.bias.data),
                                 b.add_float(node.name + ".mean", dims, zeros),
                                 b.add_float(node.name + ".var", dims, ones)},
                                output);
    OnnxBuilder::set_float(proto, "epsilon", 0.0f);
}

void emit_shuffle(OnnxBuilder& b, const Node& node, const std::vector<int64_t>& in,
                  const std::string& input, const std::string& output) {
    const int64_t g = node.groups, c = in.at(0), h = in.at(1), w = in.at(2);
    const auto* grouped =
        b.add_node("Reshape", node.name, {input, b.add_int64(node.name + ".grouped_shape", {5},
                                                            {0, g, c / g, h, w})},
                   node.name + "/grouped");
    auto* transposed = b.add_node("Transpose", node.name + "/transpose", {grouped->output(0)},
                                  node.name + "/transposed");
    OnnxBuilder::set_ints(transposed, "perm", {0, 2, 1, 3, 4});
    b.add_node_to("Reshape", node.name + "/merge",
                  {transposed->output(0), b.add_int64(node.name + ".shape", {4}, {0, c, h, w})},
                  output);
}

void emit_slice(OnnxBuilder& b, const Node& node, const std::string& input,
                const std::string& output) {
    b.add_node_to("Slice", node.name,
                  {input, b.add_int64(node.name + ".starts", {1}, {node.channel_begin}),
                   b.add_int64(node.name + ".ends", {1}, {node.channel_end}),
                   b.add_int64(node.name + ".axes", {1}, {1})},
                  output);
}

} // namespace

void emit_channel_op(OnnxBuilder& b, const Node& node, const std::vector<int64_t>& in_shape,
                     const std::string& input, const std::string& output) {
    switch (node.op) {
    case Op::channel_affine: return emit_affine(b, node, input, output);
    case Op::channel_shuffle: return emit_shuffle(b, node, in_shape, input, output);
    case Op::channel_slice: return emit_slice(b, node, input, output);
    default:
        throw Error("export: node '" + node.name + "' (" + op_name(node.op) +
                    ") is not a channel op");
    }
}

} // namespace mps
