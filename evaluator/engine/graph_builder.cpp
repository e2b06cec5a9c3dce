#include "evaluator/engine/graph_builder.h"

#include "evaluator/base/error.h"

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

void NodeBuilder::build_add(PlanMemory& plan, const Stage& stage,
                            std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    const memory a = plan.values.at(node.inputs.at(0));
    const memory b = as_layout(plan, steps, node.inputs.at(1), a.get_desc());
    using binary = dnnl::binary;
    const binary::desc desc(dnnl::algorithm::binary_add, a.get_desc(), b.get_desc(), a.get_desc());
    const binary::primitive_desc pd(desc, attr_with(eltwise_post_op(stage.eltwise)), engine_);
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({binary(pd), {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}}});
    plan.values[node.output] = dst;
    plan.values[stage.output] = dst;
}

void NodeBuilder::build_eltwise(PlanMemory& plan, const Stage& stage,
                                std::vector<Step>& steps) const {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    using eltwise = dnnl::eltwise_forward;
    const bool relu = node.op == Op::relu;
    const eltwise::desc desc(dnnl::prop_kind::forward_inference,
                             relu ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_clip,
                             src.get_desc(), relu ? 0.0f : node.clip_min,
                             relu ? 0.0f : node.clip_max);
    const eltwise::primitive_desc pd(desc, engine_);
    memory dst(pd.dst_desc(), engine_);
    steps.push_back({eltwise(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    plan.values[stage.output] = dst;
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
