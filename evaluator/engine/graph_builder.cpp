#include "evaluator/engine/graph_builder.h"

#include "evaluator/base/error.h"

#include <cstring>
#include <set>

namespace mps::onednn {

using tag = memory::format_tag;

Readers readers_of(const Graph& graph) {
    Readers readers;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i)
        for (const std::string& value : graph.nodes[i].inputs) readers[value].push_back(i);
    return readers;
}

namespace {

// The node reading `value` when it is its only reader (and the value is not the output).
const Node* sole_reader(const Graph& graph, const Readers& readers, const std::string& value) {
    auto it = readers.find(value);
    if (value == graph.output || it == readers.end() || it->second.size() != 1) return nullptr;
    return &graph.nodes[static_cast<size_t>(it->second[0])];
}

// The add that stage.node (a conv) can accumulate into: the conv output's sole reader, adding
// two different values, the other computed before the conv.
void fuse_sum(const Graph& graph, const Readers& readers,
              const std::map<std::string, int>& producer_index, Stage& stage) {
    const Node* add = sole_reader(graph, readers, stage.node->output);
    if (!add || add->op != Op::add || add->inputs.size() != 2 || add->inputs[0] == add->inputs[1])
        return;
    const std::string& other =
        add->inputs[0] == stage.node->output ? add->inputs[1] : add->inputs[0];
    if (other != graph.input && producer_index.at(other) >= stage.index) return;
    stage.sum_add = add;
    stage.sum_operand = other;
    stage.output = add->output;
}

} // namespace

std::vector<Stage> fuse_stages(const Graph& graph, const Readers& readers, bool fuse_sums) {
    std::map<std::string, int> producer_index;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i)
        producer_index[graph.nodes[static_cast<size_t>(i)].output] = i;
    std::vector<Stage> stages;
    std::set<const Node*> absorbed;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
        const Node& node = graph.nodes[static_cast<size_t>(i)];
        if (absorbed.count(&node)) continue;
        Stage stage{&node, i, nullptr, "", nullptr, node.output};
        if (fuse_sums && node.op == Op::conv) {
            fuse_sum(graph, readers, producer_index, stage);
            if (stage.sum_add) absorbed.insert(stage.sum_add);
        }
        if (node.op == Op::conv || node.op == Op::fully_connected || node.op == Op::add) {
            const Node* act = sole_reader(graph, readers, stage.output);
            if (act && (act->op == Op::relu || act->op == Op::clip)) {
                stage.eltwise = act;
                stage.output = act->output;
                absorbed.insert(act);
            }
        }
        stages.push_back(stage);
    }
    return stages;
}

Step reorder_step(const memory& from, const memory& to) {
    return {dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}};
}

void NodeBuilder::begin(PlanMemory& plan, int64_t n) const {
    plan.n = n;
    plan.input = memory(plain_desc(with_batch(n, graph_.input_shape)), engine_, nullptr);
    plan.values[graph_.input] = plan.input;
}

memory NodeBuilder::row_major_view(PlanMemory& plan, std::vector<Step>& steps,
                                   const memory& source) const {
    const memory::dims dims = source.get_desc().dims();
    const memory::desc flat = plain_desc({plan.n, Tensor::count(dims) / plan.n});
    if (source.get_desc() == plain_desc(dims) && source.get() != plan.input.get())
        return memory(flat, engine_, source.get_data_handle());
    memory laid_out(plain_desc(dims), engine_);
    steps.push_back(reorder_step(source, laid_out));
    plan.storage.push_back(laid_out); // the view does not own the buffer
    return memory(flat, engine_, laid_out.get_data_handle());
}

memory NodeBuilder::as_layout(PlanMemory& plan, std::vector<Step>& steps,
                              const std::string& value, const memory::desc& want) const {
    const memory& have = plan.values.at(value);
    if (have.get_desc() == want) return have;
    for (auto& [name, mem] : plan.converted)
        if (name == value && mem.get_desc() == want) return mem;
    memory copy(want, engine_);
    steps.push_back(reorder_step(have, copy));
    plan.converted.emplace_back(value, copy);
    return copy;
}

void NodeBuilder::build_pool(PlanMemory& plan, const Stage& stage,
                             std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    const memory::dims dst_dims = with_batch(plan.n, graph_.shapes.at(node.output));
    const auto pd = pooling_inference(node, src.get_desc(), dst_dims, engine_);
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    plan.values[stage.output] = dst;
}

// The operand oneDNN's binary reads as src0: the full-size one. oneDNN broadcasts only src1, so
// a squeeze-excitation scale [C, 1, 1] goes second whichever side ONNX put it on (mul commutes).
std::pair<std::string, std::string> NodeBuilder::binary_operands(const Node& node) const {
    const std::string &a = node.inputs.at(0), &b = node.inputs.at(1);
    if (Tensor::count(graph_.shapes.at(a)) < Tensor::count(graph_.shapes.at(b))) return {b, a};
    return {a, b};
}

// Add and mul: equal shapes read src1 in src0's layout; a broadcast src1 {N, C, 1, 1} is offered
// plain first (one value per channel), then in the layout oneDNN picks for it.
void NodeBuilder::build_binary(PlanMemory& plan, const Stage& stage,
                               std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    const auto [first, second] = binary_operands(node);
    const memory a = plan.values.at(first);
    const memory::dims b_dims = with_batch(plan.n, graph_.shapes.at(second));
    const bool broadcast = b_dims != a.get_desc().dims();
    using binary = dnnl::binary;
    const auto algo =
        node.op == Op::mul ? dnnl::algorithm::binary_mul : dnnl::algorithm::binary_add;
    const memory::desc tries[] = {broadcast ? plain_desc(b_dims) : a.get_desc(),
                                  memory::desc(b_dims, memory::data_type::f32, tag::any)};
    const auto pd = first_fast<binary::primitive_desc>(
        broadcast ? 2 : 1,
        [&](size_t i) {
            const binary::desc desc(algo, a.get_desc(), tries[i], a.get_desc());
            return binary::primitive_desc(desc, attr_with(eltwise_post_op(stage.eltwise)),
                                          engine_);
        },
        [](const binary::primitive_desc& p) { return is_reference_impl(p); });
    const memory b = as_layout(plan, steps, second, pd.src_desc(1));
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({binary(pd), {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}}});
    plan.values[node.output] = dst;
    plan.values[stage.output] = dst;
}

// Channel concatenation of the inputs in the layouts they have; oneDNN picks the output layout.
void NodeBuilder::build_concat(PlanMemory& plan, const Stage& stage,
                               std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    std::vector<memory::desc> srcs;
    for (const std::string& value : node.inputs) srcs.push_back(plan.values.at(value).get_desc());
    const dnnl::concat::primitive_desc pd(1, srcs, engine_);
    memory dst(pd.dst_desc(), engine_);
    std::unordered_map<int, memory> args{{DNNL_ARG_DST, dst}};
    for (size_t i = 0; i < node.inputs.size(); ++i)
        args[DNNL_ARG_MULTIPLE_SRC + static_cast<int>(i)] = plan.values.at(node.inputs[i]);
    steps.push_back({dnnl::concat(pd), std::move(args)});
    plan.values[stage.output] = dst;
}

namespace {

struct EltwiseStep {
    dnnl::algorithm algorithm;
    float alpha = 0.0f, beta = 0.0f;
};

// The oneDNN eltwise passes computing a unary op. oneDNN 2.6 has no hard sigmoid (its hardswish
// takes no alpha / beta): that one is a linear pass, alpha * x + beta, then a clip to [0, 1].
std::vector<EltwiseStep> eltwise_steps(const Node& node) {
    using algo = dnnl::algorithm;
    switch (node.op) {
    case Op::relu: return {{algo::eltwise_relu}};
    case Op::clip: return {{algo::eltwise_clip, node.clip_min, node.clip_max}};
    case Op::sigmoid: return {{algo::eltwise_logistic}};
    case Op::hard_swish: return {{algo::eltwise_hardswish}};
    case Op::hard_sigmoid:
        return {{algo::eltwise_linear, node.alpha, node.beta}, {algo::eltwise_clip, 0.0f, 1.0f}};
    default:
        throw Error("node '" + node.name + "' (" + op_name(node.op) + ") is not an eltwise op");
    }
}

} // namespace

void NodeBuilder::build_eltwise(PlanMemory& plan, const Stage& stage,
                                std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    memory src = plan.values.at(node.inputs[0]);
    using eltwise = dnnl::eltwise_forward;
    for (const EltwiseStep& step : eltwise_steps(node)) {
        const eltwise::desc desc(dnnl::prop_kind::forward_inference, step.algorithm,
                                 src.get_desc(), step.alpha, step.beta);
        const eltwise::primitive_desc pd(desc, engine_);
        memory dst(pd.dst_desc(), engine_);
        steps.push_back({eltwise(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
        src = dst;
    }
    plan.values[stage.output] = src;
}

void NodeBuilder::build_channel_op(PlanMemory& plan, const Stage& stage,
                                   std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    switch (node.op) {
    case Op::channel_affine: build_channel_affine(plan, node, steps); break;
    case Op::channel_shuffle: build_channel_shuffle(plan, node, steps); break;
    case Op::channel_slice: build_channel_slice(plan, node, steps); break;
    default:
        throw Error("node '" + node.name + "' (" + op_name(node.op) + ") is not a channel op");
    }
}

memory NodeBuilder::channel_constant(PlanMemory& plan, const std::vector<float>& values) const {
    memory m(plain_desc({static_cast<int64_t>(values.size())}), engine_);
    std::memcpy(m.get_data_handle(), values.data(), values.size() * sizeof(float));
    plan.storage.push_back(m);
    return m;
}

// A batch normalization on global statistics mean 0 and variance 1 with epsilon 0 is exactly
// y = scale * x + shift. (oneDNN 2.6's jit binary mul by a {1, C, 1, 1} operand with a binary
// add post-op computed wrong values for N x C x 1 x 1 inputs; this primitive takes every layout.)
void NodeBuilder::build_channel_affine(PlanMemory& plan, const Node& node,
                                       std::vector<Step>& steps) const {
    const memory src = plan.values.at(node.inputs[0]);
    using bn = dnnl::batch_normalization_forward;
    const auto flags = dnnl::normalization_flags::use_global_stats |
                       dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const bn::desc desc(dnnl::prop_kind::forward_inference, src.get_desc(), 0.0f, flags);
    const bn::primitive_desc pd(desc, engine_);
    const size_t channels = node.weight.data.size();
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({bn(pd),
                     {{DNNL_ARG_SRC, src},
                      {DNNL_ARG_DST, dst},
                      {DNNL_ARG_MEAN, channel_constant(plan, std::vector<float>(channels, 0.0f))},
                      {DNNL_ARG_VARIANCE, channel_constant(plan, std::vector<float>(channels, 1.0f))},
                      {DNNL_ARG_SCALE, channel_constant(plan, node.weight.data)},
                      {DNNL_ARG_SHIFT, channel_constant(plan, node.bias.data)}}});
    plan.values[node.output] = dst;
}

// oneDNN's group_size is the channels per group of ONNX's view: it transposes [C / G, G] to
// [G, C / G], where ShuffleNet transposes [groups, C / groups].
void NodeBuilder::build_channel_shuffle(PlanMemory& plan, const Node& node,
                                        std::vector<Step>& steps) const {
    const memory src = plan.values.at(node.inputs[0]);
    const int64_t channels = graph_.shapes.at(node.output).at(0);
    using shuffle = dnnl::shuffle_forward;
    const shuffle::desc desc(dnnl::prop_kind::forward_inference, src.get_desc(), 1,
                             static_cast<int>(channels / node.groups));
    const shuffle::primitive_desc pd(desc, engine_);
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({shuffle(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    plan.values[node.output] = dst;
}

// Blocked layouts allow views only at whole blocks of channels, so the slice reads the value laid
// out nchw (one reorder shared by every slice of it); the user's input buffer changes every run
// and is copied first.
void NodeBuilder::build_channel_slice(PlanMemory& plan, const Node& node,
                                      std::vector<Step>& steps) const {
    const memory::dims dims = plan.values.at(node.inputs[0]).get_desc().dims();
    memory plain = as_layout(plan, steps, node.inputs[0], plain_desc(dims));
    if (plain.get() == plan.input.get()) {
        memory copy(plain_desc(dims), engine_);
        steps.push_back(reorder_step(plain, copy));
        plan.storage.push_back(copy);
        plain = copy;
    }
    const memory::dims part{dims[0], node.channel_end - node.channel_begin, dims[2], dims[3]};
    const memory view(plain.get_desc().submemory_desc(part, {0, node.channel_begin, 0, 0}),
                      engine_, plain.get_data_handle());
    memory dst(plain_desc(part), engine_);
    steps.push_back(reorder_step(view, dst));
    plan.values[node.output] = dst;
}

void NodeBuilder::build_flatten(PlanMemory& plan, const Stage& stage,
                                std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    bool only_inner_products = node.output != graph_.output;
    if (auto it = readers_.find(node.output); it != readers_.end())
        for (int reader : it->second)
            only_inner_products &=
                graph_.nodes[static_cast<size_t>(reader)].op == Op::fully_connected;
    if (only_inner_products) {
        plan.values[node.output] = src; // the inner product reads the 4-D memory directly
        return;
    }
    plan.values[node.output] = row_major_view(plan, steps, src);
}

ConvGeometry conv_geometry(const Node& conv) {
    if (conv.weight.dims.size() != 4)
        throw Error("node '" + conv.name + "' (conv): weight must be OIHW, got " +
                    std::to_string(conv.weight.dims.size()) + " dimensions");
    const auto& w = conv.weight.dims;
    const int64_t g = conv.groups;
    ConvGeometry geometry;
    geometry.weights = g == 1 ? memory::dims{w[0], w[1], w[2], w[3]}
                              : memory::dims{g, w[0] / g, w[1], w[2], w[3]};
    geometry.weights_tag = g == 1 ? tag::oihw : tag::goihw;
    geometry.strides = {conv.stride[0], conv.stride[1]};
    geometry.dilates = {conv.dilation[0] - 1, conv.dilation[1] - 1};
    geometry.pad_l = {conv.pad_begin[0], conv.pad_begin[1]};
    geometry.pad_r = {conv.pad_end[0], conv.pad_end[1]};
    return geometry;
}

dnnl::convolution_forward::desc conv_forward_desc(const ConvGeometry& geometry,
                                                  dnnl::prop_kind prop, const memory::desc& src,
                                                  const memory::desc& weights,
                                                  const memory::desc* bias,
                                                  const memory::desc& dst) {
    using conv = dnnl::convolution_forward;
    const auto algo = dnnl::algorithm::convolution_direct;
    const ConvGeometry& g = geometry;
    return bias ? conv::desc(prop, algo, src, weights, *bias, dst, g.strides, g.dilates, g.pad_l,
                             g.pad_r)
                : conv::desc(prop, algo, src, weights, dst, g.strides, g.dilates, g.pad_l,
                             g.pad_r);
}

} // namespace mps::onednn
