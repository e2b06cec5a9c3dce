#include "evaluator/ir/graph.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <set>
#include <sstream>

namespace mps {

const char* op_name(Op op) {
    switch (op) {
    case Op::conv: return "conv";
    case Op::fully_connected: return "fully_connected";
    case Op::batch_norm: return "batch_norm";
    case Op::relu: return "relu";
    case Op::clip: return "clip";
    case Op::max_pool: return "max_pool";
    case Op::average_pool: return "average_pool";
    case Op::global_average_pool: return "global_average_pool";
    case Op::add: return "add";
    case Op::flatten: return "flatten";
    case Op::concat: return "concat";
    case Op::sigmoid: return "sigmoid";
    case Op::hard_sigmoid: return "hard_sigmoid";
    case Op::hard_swish: return "hard_swish";
    case Op::mul: return "mul";
    case Op::channel_affine: return "channel_affine";
    case Op::channel_shuffle: return "channel_shuffle";
    case Op::channel_slice: return "channel_slice";
    }
    return "unknown";
}

bool accepts_inputs(Op op, size_t count) {
    switch (op) {
    case Op::add:
    case Op::mul: return count == 2;
    case Op::concat: return count >= 2;
    default: return count == 1;
    }
}

const char* expected_inputs_text(Op op) {
    switch (op) {
    case Op::add:
    case Op::mul: return "2";
    case Op::concat: return "2 or more";
    default: return "1";
    }
}

const Node* Graph::find_node(const std::string& name) const {
    for (const Node& n : nodes)
        if (n.name == name) return &n;
    return nullptr;
}

const Node* Graph::producer(const std::string& value) const {
    for (const Node& n : nodes)
        if (n.output == value) return &n;
    return nullptr;
}

int Graph::consumers(const std::string& value) const {
    int count = 0;
    for (const Node& n : nodes)
        count += static_cast<int>(std::count(n.inputs.begin(), n.inputs.end(), value));
    return count;
}

bool is_quantizable(const Node& node) {
    return node.op == Op::conv || node.op == Op::fully_connected;
}

namespace {

[[noreturn]] void fail(const Node& node, const std::string& what) {
    throw Error("node '" + node.name + "' (" + op_name(node.op) + "): " + what);
}

int64_t pooled_extent(int64_t in, int64_t k, int64_t stride, int64_t pb, int64_t pe,
                      int64_t dilation) {
    const int64_t span = dilation * (k - 1) + 1;
    return (in + pb + pe - span) / stride + 1;
}

void check_param(const Node& node, const Tensor& t, const std::vector<int64_t>& want,
                 const char* what) {
    if (t.dims != want)
        fail(node, std::string(what) + " has shape " + dims_text(t.dims) + " but " +
                       dims_text(want) + " is needed");
}

std::vector<int64_t> spatial_shape(const Node& node, const std::vector<int64_t>& in,
                                   int64_t channels) {
    if (in.size() != 3) fail(node, "needs a CxHxW input, got " + dims_text(in));
    std::vector<int64_t> out{channels, 0, 0};
    for (int i = 0; i < 2; ++i) {
        if (node.kernel[i] < 1 || node.stride[i] < 1 || node.dilation[i] < 1)
            fail(node, "kernel, stride and dilation must be positive");
        out[1 + i] = pooled_extent(in[1 + i], node.kernel[i], node.stride[i], node.pad_begin[i],
                                   node.pad_end[i], node.dilation[i]);
        if (out[1 + i] < 1)
            fail(node, "window larger than the padded input " + dims_text(in));
    }
    return out;
}

std::vector<int64_t> conv_shape(const Node& node, const std::vector<int64_t>& in) {
    if (node.weight.dims.size() != 4) fail(node, "weight must be OIHW");
    const int64_t out_c = node.weight.dims[0];
    if (in.size() != 3) fail(node, "needs a CxHxW input, got " + dims_text(in));
    if (node.groups < 1 || in[0] % node.groups != 0 || out_c % node.groups != 0)
        fail(node, "groups=" + std::to_string(node.groups) + " does not divide the " +
                       std::to_string(in[0]) + " input and " + std::to_string(out_c) +
                       " output channels");
    if (node.weight.dims[1] != in[0] / node.groups || node.weight.dims[2] != node.kernel[0] ||
        node.weight.dims[3] != node.kernel[1])
        fail(node, "weight " + dims_text(node.weight.dims) + " does not match input " +
                       dims_text(in) + " with groups=" + std::to_string(node.groups) +
                       " and kernel " + std::to_string(node.kernel[0]) + "x" +
                       std::to_string(node.kernel[1]));
    if (!node.bias.empty()) check_param(node, node.bias, {out_c}, "bias");
    return spatial_shape(node, in, out_c);
}

std::vector<int64_t> fc_shape(const Node& node, const std::vector<int64_t>& in) {
    if (in.size() != 1) fail(node, "needs a flattened input, got " + dims_text(in));
    if (node.weight.dims.size() != 2 || node.weight.dims[1] != in[0])
        fail(node, "weight " + dims_text(node.weight.dims) + " does not match " +
                       std::to_string(in[0]) + " inputs");
    if (!node.bias.empty()) check_param(node, node.bias, {node.weight.dims[0]}, "bias");
    return {node.weight.dims[0]};
}

std::vector<int64_t> batch_norm_shape(const Node& node, const std::vector<int64_t>& in) {
    const std::vector<int64_t> c{in.empty() ? 0 : in[0]};
    check_param(node, node.weight, c, "scale");
    check_param(node, node.bias, c, "shift");
    check_param(node, node.mean, c, "mean");
    check_param(node, node.var, c, "variance");
    return in;
}

std::vector<int64_t> channel_affine_shape(const Node& node, const std::vector<int64_t>& in) {
    const std::vector<int64_t> c{in.empty() ? 0 : in[0]};
    check_param(node, node.weight, c, "scale");
    check_param(node, node.bias, c, "shift");
    return in;
}

std::vector<int64_t> channel_shuffle_shape(const Node& node, const std::vector<int64_t>& in) {
    if (in.size() != 3) fail(node, "shuffles the channels of a CxHxW value, got " + dims_text(in));
    if (node.groups < 1 || in[0] % node.groups != 0)
        fail(node, std::to_string(node.groups) + " groups do not divide " +
                       std::to_string(in[0]) + " channels");
    return in;
}

std::vector<int64_t> channel_slice_shape(const Node& node, const std::vector<int64_t>& in) {
    if (in.size() != 3) fail(node, "slices the channels of a CxHxW value, got " + dims_text(in));
    if (node.channel_begin < 0 || node.channel_begin >= node.channel_end ||
        node.channel_end > in[0])
        fail(node, "channels [" + std::to_string(node.channel_begin) + ", " +
                       std::to_string(node.channel_end) + ") are not a non-empty range of the " +
                       std::to_string(in[0]) + " input channels");
    return {node.channel_end - node.channel_begin, in[1], in[2]};
}

// Channels add up; every input must be CxHxW with the first input's H and W.
std::vector<int64_t> concat_shape(const Node& node, const std::vector<std::vector<int64_t>>& in) {
    std::vector<int64_t> out = in[0];
    if (out.size() != 3) fail(node, "joins CxHxW values along channels; input 0 is " +
                                        dims_text(in[0]));
    for (size_t i = 1; i < in.size(); ++i) {
        if (in[i].size() != 3 || in[i][1] != out[1] || in[i][2] != out[2])
            fail(node, "input " + std::to_string(i) + " is " + dims_text(in[i]) +
                           " but input 0 is " + dims_text(in[0]) +
                           "; channel concatenation needs equal H and W");
        out[0] += in[i][0];
    }
    return out;
}

// The larger operand's shape: equal shapes, or a per-channel [C, 1, 1] scale (either operand)
// against [C, H, W] - the squeeze-excitation product.
std::vector<int64_t> mul_shape(const Node& node, const std::vector<int64_t>& a,
                               const std::vector<int64_t>& b) {
    if (a == b) return a;
    const bool a_scales_b = a.size() == 3 && b.size() == 3 && a[0] == b[0] && a[1] == 1 && a[2] == 1;
    const bool b_scales_a = a.size() == 3 && b.size() == 3 && a[0] == b[0] && b[1] == 1 && b[2] == 1;
    if (a_scales_b) return b;
    if (b_scales_a) return a;
    fail(node, "multiplies " + dims_text(a) + " by " + dims_text(b) +
                   "; the operands must have the same shape, or one must be Cx1x1 with the "
                   "other's C");
}

} // namespace

std::vector<int64_t> output_shape(const Node& node,
                                  const std::vector<std::vector<int64_t>>& in) {
    switch (node.op) {
    case Op::conv: return conv_shape(node, in[0]);
    case Op::fully_connected: return fc_shape(node, in[0]);
    case Op::batch_norm: return batch_norm_shape(node, in[0]);
    case Op::relu:
    case Op::clip: return in[0];
    case Op::max_pool:
    case Op::average_pool: return spatial_shape(node, in[0], in[0].empty() ? 0 : in[0][0]);
    case Op::global_average_pool:
        if (in[0].size() != 3) fail(node, "needs a CxHxW input, got " + dims_text(in[0]));
        return {in[0][0], 1, 1};
    case Op::add:
        if (in[0] != in[1])
            fail(node, "adds " + dims_text(in[0]) + " to " + dims_text(in[1]) +
                           "; both operands must have the same shape");
        return in[0];
    case Op::flatten: return {Tensor::count(in[0])};
    case Op::concat: return concat_shape(node, in);
    case Op::sigmoid:
    case Op::hard_sigmoid:
    case Op::hard_swish: return in[0];
    case Op::mul: return mul_shape(node, in[0], in[1]);
    case Op::channel_affine: return channel_affine_shape(node, in[0]);
    case Op::channel_shuffle: return channel_shuffle_shape(node, in[0]);
    case Op::channel_slice: return channel_slice_shape(node, in[0]);
    }
    fail(node, "unknown op");
}

void infer_shapes(Graph& graph) {
    graph.shapes.clear();
    graph.shapes[graph.input] = graph.input_shape;
    for (const Node& node : graph.nodes) {
        if (!accepts_inputs(node.op, node.inputs.size()))
            fail(node, "has " + std::to_string(node.inputs.size()) + " inputs, expected " +
                           expected_inputs_text(node.op));
        std::vector<std::vector<int64_t>> in;
        for (const std::string& v : node.inputs) {
            auto it = graph.shapes.find(v);
            if (it == graph.shapes.end())
                fail(node, "reads value '" + v + "' that no earlier node produces");
            in.push_back(it->second);
        }
        if (graph.shapes.count(node.output))
            fail(node, "writes value '" + node.output + "' that already exists");
        graph.shapes[node.output] = output_shape(node, in);
    }
    if (!graph.shapes.count(graph.output))
        throw Error("graph output '" + graph.output + "' is not produced by any node");
}

namespace {

// gamma / sqrt(var + eps) per channel: the factor both forms of a folded batch_norm scale by.
float batch_norm_factor(const Node& bn, int64_t c) {
    return bn.weight.data[c] / std::sqrt(bn.var.data[c] + bn.epsilon);
}

void fold_into_conv(Node& conv, const Node& bn) {
    const int64_t out_c = conv.weight.dims[0];
    const int64_t per_kernel = conv.weight.numel() / out_c;
    if (conv.bias.empty()) conv.bias = Tensor({out_c}, 0.0f);
    for (int64_t k = 0; k < out_c; ++k) {
        const float f = batch_norm_factor(bn, k);
        for (int64_t i = 0; i < per_kernel; ++i) conv.weight.data[k * per_kernel + i] *= f;
        conv.bias.data[k] = (conv.bias.data[k] - bn.mean.data[k]) * f + bn.bias.data[k];
    }
    conv.output = bn.output;
}

// The batch_norm as y = f * x + (0 - mean) * f + beta: the conv fold's formula with no conv.
Node as_channel_affine(Node bn) {
    const int64_t channels = bn.weight.numel();
    Tensor scale({channels}), shift({channels});
    for (int64_t c = 0; c < channels; ++c) {
        scale.data[c] = batch_norm_factor(bn, c);
        shift.data[c] = (0.0f - bn.mean.data[c]) * scale.data[c] + bn.bias.data[c];
    }
    bn.op = Op::channel_affine;
    bn.weight = std::move(scale);
    bn.bias = std::move(shift);
    bn.mean = Tensor();
    bn.var = Tensor();
    return bn;
}

} // namespace

void fold_batch_norm(Graph& graph) {
    std::map<std::string, int> readers;
    for (const Node& node : graph.nodes)
        for (const std::string& v : node.inputs) ++readers[v];
    std::vector<Node> folded;
    folded.reserve(graph.nodes.size());
    for (Node& node : graph.nodes) {
        if (node.op != Op::batch_norm) {
            folded.push_back(std::move(node));
            continue;
        }
        Node* conv = folded.empty() ? nullptr : &folded.back();
        if (conv && conv->op == Op::conv && conv->output == node.inputs[0] &&
            readers[conv->output] == 1)
            fold_into_conv(*conv, node);
        else
            folded.push_back(as_channel_affine(std::move(node)));
    }
    graph.nodes = std::move(folded);
    infer_shapes(graph);
}

int64_t node_macs(const Graph& graph, const Node& node) {
    if (!is_quantizable(node)) return 0;
    const int64_t per_kernel = node.weight.numel() / node.weight.dims[0];
    const auto& out = graph.shapes.at(node.output);
    const int64_t positions = out.size() == 3 ? out[1] * out[2] : 1;
    return node.weight.dims[0] * per_kernel * positions;
}

int64_t graph_macs(const Graph& graph) {
    int64_t total = 0;
    for (const Node& n : graph.nodes) total += node_macs(graph, n);
    return total;
}

int64_t graph_params(const Graph& graph) {
    int64_t total = 0;
    for (const Node& n : graph.nodes)
        total += n.weight.numel() + n.bias.numel();
    return total;
}

Graph truncated_at(const Graph& graph, const std::string& value) {
    std::set<std::string> needed{value};
    std::vector<bool> keep(graph.nodes.size(), false);
    for (size_t i = graph.nodes.size(); i-- > 0;) {
        const Node& node = graph.nodes[i];
        if (!needed.count(node.output)) continue;
        keep[i] = true;
        needed.insert(node.inputs.begin(), node.inputs.end());
    }
    Graph prefix;
    prefix.input = graph.input;
    prefix.input_shape = graph.input_shape;
    prefix.output = value;
    for (size_t i = 0; i < graph.nodes.size(); ++i)
        if (keep[i]) prefix.nodes.push_back(graph.nodes[i]);
    infer_shapes(prefix);
    return prefix;
}

} // namespace mps
