#include "evaluator/inference.h"

#include "evaluator/error.h"
#include "evaluator/onednn_util.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace mps {
namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using namespace onednn;

std::string where(const Node& node) {
    return "inference: node '" + node.name + "' (" + op_name(node.op) + ")";
}

// The graph's readers of each value, as node indices in execution order.
std::map<std::string, std::vector<int>> readers_of(const Graph& graph) {
    std::map<std::string, std::vector<int>> readers;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i)
        for (const std::string& value : graph.nodes[i].inputs) readers[value].push_back(i);
    return readers;
}

// The graph with every batch_norm folded into its conv, or unchanged when fold_batch_norm refuses
// (some batch_norm does not directly follow a conv it alone reads): those run as primitives.
Graph folded_if_possible(const Graph& graph) {
    const bool has_bn = std::any_of(graph.nodes.begin(), graph.nodes.end(),
                                    [](const Node& n) { return n.op == Op::batch_norm; });
    if (!has_bn) return graph;
    Graph folded = graph;
    try {
        fold_batch_norm(folded);
    } catch (const Error&) {
        return graph;
    }
    return folded;
}

// A unit of execution, independent of the batch size: one graph node plus the nodes fused into it.
struct Stage {
    const Node* node = nullptr;
    int index = 0;                  // position of `node` in graph.nodes
    const Node* sum_add = nullptr;  // conv only: an add fused as sum post-op...
    std::string sum_operand;        // ...and its other operand
    const Node* eltwise = nullptr;  // relu / clip fused as eltwise post-op
    std::string output;             // value this stage finally produces
};

// One primitive of a plan with its arguments.
struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> args;
};

// Everything to run one batch size: primitives, their arguments and the activation memories.
struct Plan {
    int64_t n = 0;
    memory input;  // user images, nchw; handle set per run
    memory output; // logits, plain [n, classes]
    std::vector<Step> steps;
    std::map<std::string, memory> values;
    std::vector<std::pair<std::string, memory>> converted; // value re-laid out for a consumer
    std::vector<memory> storage; // buffers reached only through views, kept alive here
};

} // namespace

struct InferenceEngine::Impl {
    Graph graph;
    int64_t batch = 0;
    int64_t classes = 0;
    int64_t image_floats = 0;
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::vector<Stage> stages;
    std::map<std::string, std::vector<int>> readers;
    std::map<std::string, std::vector<memory>> weights; // per node, in each layout asked for
    std::map<std::string, memory> constants;             // biases, batch_norm statistics
    std::map<int64_t, std::unique_ptr<Plan>> plans;
    std::vector<float> logits;

    Impl(const Graph& source, int64_t batch_size);
    void plan_stages();
    bool sum_in_place_allowed(const Stage& stage, const std::string& operand) const;
    Plan& plan_for(int64_t n);
    std::unique_ptr<Plan> build_plan(int64_t n);

    // Helpers for build_plan.
    memory as_layout(Plan& plan, const std::string& value, const memory::desc& want);
    memory weights_for(const Node& node, const memory::desc& want, const memory::desc& user);
    memory constant(const std::string& key, const Tensor& t);
    void add_reorder(Plan& plan, const memory& from, const memory& to);
    memory row_major_view(Plan& plan, const memory& source);
    void build_conv(Plan& plan, const Stage& stage);
    void build_inner_product(Plan& plan, const Stage& stage);
    void build_pool(Plan& plan, const Stage& stage);
    void build_add(Plan& plan, const Stage& stage);
    void build_eltwise(Plan& plan, const Stage& stage);
    void build_batch_norm(Plan& plan, const Stage& stage);
    void build_flatten(Plan& plan, const Stage& stage);
};

InferenceEngine::Impl::Impl(const Graph& source, int64_t batch_size) : batch(batch_size) {
    if (batch < 1)
        throw Error("inference: batch size must be at least 1, got " + std::to_string(batch));
    graph = source;
    infer_shapes(graph);
    graph = folded_if_possible(graph);
    readers = readers_of(graph);
    classes = Tensor::count(graph.shapes.at(graph.output));
    image_floats = Tensor::count(graph.input_shape);
    plan_stages();
    logits.assign(static_cast<size_t>(batch * classes), 0.0f);
    plan_for(batch); // creates the primitives and reorders the weights now
}

// Decides the fusions, independent of the batch size.
void InferenceEngine::Impl::plan_stages() {
    std::map<std::string, int> producer_index;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i)
        producer_index[graph.nodes[i].output] = i;
    // The node reading `value` when it is its only reader (and the value is not the output).
    auto sole_reader = [&](const std::string& value) -> const Node* {
        auto it = readers.find(value);
        if (value == graph.output || it == readers.end() || it->second.size() != 1) return nullptr;
        return &graph.nodes[it->second[0]];
    };
    std::set<const Node*> absorbed;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
        const Node& node = graph.nodes[i];
        if (absorbed.count(&node)) continue;
        Stage stage{&node, i, nullptr, "", nullptr, node.output};
        if (node.op == Op::conv) {
            const Node* add = sole_reader(node.output);
            if (add && add->op == Op::add && add->inputs.size() == 2 &&
                add->inputs[0] != add->inputs[1]) {
                const std::string& other =
                    add->inputs[0] == node.output ? add->inputs[1] : add->inputs[0];
                const bool ready = other == graph.input || producer_index.at(other) < i;
                if (ready) {
                    stage.sum_add = add;
                    stage.sum_operand = other;
                    stage.output = add->output;
                    absorbed.insert(add);
                }
            }
        }
        if (node.op == Op::conv || node.op == Op::fully_connected || node.op == Op::add) {
            const Node* act = sole_reader(stage.output);
            if (act && (act->op == Op::relu || act->op == Op::clip)) {
                stage.eltwise = act;
                stage.output = act->output;
                absorbed.insert(act);
            }
        }
        stages.push_back(stage);
    }
}

// The conv may accumulate into the operand's memory when nothing reads the operand later.
bool InferenceEngine::Impl::sum_in_place_allowed(const Stage& stage,
                                                 const std::string& operand) const {
    if (operand == graph.input) return false; // user memory, read-only
    const Node* producer = graph.producer(operand);
    if (!producer || producer->op == Op::flatten) return false;
    std::function<bool(const std::string&)> read_only_before = [&](const std::string& value) {
        auto it = readers.find(value);
        if (it == readers.end()) return value != graph.output;
        for (int reader : it->second) {
            const Node& r = graph.nodes[reader];
            if (&r == stage.sum_add) continue;
            if (reader >= stage.index) return false; // read later, or by this conv itself
            if (r.op == Op::flatten && !read_only_before(r.output)) return false;
        }
        return value != graph.output;
    };
    return read_only_before(operand);
}

Plan& InferenceEngine::Impl::plan_for(int64_t n) {
    auto it = plans.find(n);
    if (it == plans.end()) it = plans.emplace(n, build_plan(n)).first;
    return *it->second;
}

std::unique_ptr<Plan> InferenceEngine::Impl::build_plan(int64_t n) {
    auto plan = std::make_unique<Plan>();
    plan->n = n;
    plan->input = memory(plain_desc(with_batch(n, graph.input_shape)), engine, nullptr);
    plan->values[graph.input] = plan->input;
    for (const Stage& stage : stages) {
        try {
            switch (stage.node->op) {
            case Op::conv: build_conv(*plan, stage); break;
            case Op::fully_connected: build_inner_product(*plan, stage); break;
            case Op::max_pool:
            case Op::average_pool:
            case Op::global_average_pool: build_pool(*plan, stage); break;
            case Op::add: build_add(*plan, stage); break;
            case Op::relu:
            case Op::clip: build_eltwise(*plan, stage); break;
            case Op::batch_norm: build_batch_norm(*plan, stage); break;
            case Op::flatten: build_flatten(*plan, stage); break;
            }
        } catch (const dnnl::error& e) {
            throw Error(where(*stage.node) + ": oneDNN could not create a primitive for it (" +
                        e.what() + ")");
        }
    }
    plan->output = row_major_view(*plan, plan->values.at(graph.output));
    return plan;
}

// `source` as a row-major [n, features] memory: a view of the same buffer when it already is
// row-major, else a reordered copy. The user's input buffer changes every run, so it is copied.
memory InferenceEngine::Impl::row_major_view(Plan& plan, const memory& source) {
    const memory::dims dims = source.get_desc().dims();
    const memory::desc flat = plain_desc({plan.n, Tensor::count(dims) / plan.n});
    if (source.get_desc() == plain_desc(dims) && source.get() != plan.input.get())
        return memory(flat, engine, source.get_data_handle());
    memory laid_out(plain_desc(dims), engine);
    add_reorder(plan, source, laid_out);
    plan.storage.push_back(laid_out); // the view does not own the buffer
    return memory(flat, engine, laid_out.get_data_handle());
}

void InferenceEngine::Impl::add_reorder(Plan& plan, const memory& from, const memory& to) {
    plan.steps.push_back({dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}});
}

// `value` in layout `want`: its own memory when it already is, else a reordered copy (one per
// value and layout, shared by all consumers asking for it).
memory InferenceEngine::Impl::as_layout(Plan& plan, const std::string& value,
                                        const memory::desc& want) {
    const memory& have = plan.values.at(value);
    if (have.get_desc() == want) return have;
    for (auto& [name, mem] : plan.converted)
        if (name == value && mem.get_desc() == want) return mem;
    memory copy(want, engine);
    add_reorder(plan, have, copy);
    plan.converted.emplace_back(value, copy);
    return copy;
}

// The node's weights in layout `want`, reordered from `user` once and cached.
memory InferenceEngine::Impl::weights_for(const Node& node, const memory::desc& want,
                                          const memory::desc& user) {
    auto& cached = weights[node.name];
    for (const memory& m : cached)
        if (m.get_desc() == want) return m;
    memory source(user, engine, const_cast<float*>(node.weight.data.data()));
    memory laid_out(want, engine);
    dnnl::reorder(source, laid_out).execute(stream, source, laid_out);
    stream.wait();
    cached.push_back(laid_out);
    return laid_out;
}

memory InferenceEngine::Impl::constant(const std::string& key, const Tensor& t) {
    auto it = constants.find(key);
    if (it != constants.end()) return it->second;
    memory m(memory::desc({t.numel()}, dt::f32, tag::a), engine);
    std::memcpy(m.get_data_handle(), t.data.data(), t.data.size() * sizeof(float));
    constants.emplace(key, m);
    return m;
}

void InferenceEngine::Impl::build_conv(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const auto& in_shape = graph.shapes.at(node.inputs[0]);
    const auto& out_shape = graph.shapes.at(node.output);
    const memory::dims src_dims = with_batch(plan.n, in_shape);
    const memory::dims dst_dims = with_batch(plan.n, out_shape);
    const int64_t g = node.groups;
    const auto& w = node.weight.dims; // OIHW, I per group
    const memory::dims w_dims = g == 1 ? memory::dims{w[0], w[1], w[2], w[3]}
                                       : memory::dims{g, w[0] / g, w[1], w[2], w[3]};
    const memory::desc w_user(w_dims, dt::f32, g == 1 ? tag::oihw : tag::goihw);
    const bool has_bias = !node.bias.empty();
    const memory::desc bias_md({w[0]}, dt::f32, tag::a);
    const memory::desc w_any(w_dims, dt::f32, tag::any);
    const memory::dims strides{node.stride[0], node.stride[1]};
    const memory::dims dilates{node.dilation[0] - 1, node.dilation[1] - 1};
    const memory::dims pad_l{node.pad_begin[0], node.pad_begin[1]};
    const memory::dims pad_r{node.pad_end[0], node.pad_end[1]};
    dnnl::post_ops ops;
    if (!stage.sum_operand.empty()) ops.append_sum(1.0f);
    ops = eltwise_post_op(stage.eltwise, ops);
    using conv = dnnl::convolution_forward;
    auto make_pd = [&](const memory::desc& src_md, tag dst_tag) {
        const auto prop = dnnl::prop_kind::forward_inference;
        const auto algo = dnnl::algorithm::convolution_direct;
        const memory::desc dst_md(dst_dims, dt::f32, dst_tag);
        const conv::desc desc =
            has_bias ? conv::desc(prop, algo, src_md, w_any, bias_md, dst_md, strides, dilates,
                                  pad_l, pad_r)
                     : conv::desc(prop, algo, src_md, w_any, dst_md, strides, dilates, pad_l, pad_r);
        return conv::primitive_desc(desc, attr_with(ops), engine, true);
    };
    // Layout choice. Left entirely to oneDNN, 2.6 picks brgconv on nhwc: resnet8 ran about 25 %
    // slower that way than with the direct jit kernels on nChw16c (its 1-channel stem ~10x
    // slower). So the destination is fixed to nChw16c (nChw8c below AVX-512), and the source is first offered in the
    // layout it already has (no reorder: a 1-channel stem reads the nchw input, a 6-channel conv
    // reads its padded blocked input), then in a layout oneDNN picks. Shapes the blocked kernels
    // do not cover (they would fall to the reference kernel) keep oneDNN's own choice.
    const memory::desc src_have = plan.values.at(node.inputs[0]).get_desc();
    const memory::desc src_any(src_dims, dt::f32, tag::any);
    auto usable = [](const conv::primitive_desc& p) {
        return p && !is_reference_impl(p);
    };
    const tag blocked = blocked_activation_tag();
    conv::primitive_desc pd = make_pd(src_have, blocked);
    if (!usable(pd)) pd = make_pd(src_any, blocked);
    if (!usable(pd)) pd = make_pd(src_any, tag::any);
    if (!pd) throw Error(where(node) + ": oneDNN has no convolution for this shape");

    const memory src = as_layout(plan, node.inputs[0], pd.src_desc());
    const memory weights = weights_for(node, pd.weights_desc(), w_user);
    memory dst;
    if (!stage.sum_operand.empty()) {
        const memory& operand = plan.values.at(stage.sum_operand);
        if (operand.get_desc() == pd.dst_desc() && sum_in_place_allowed(stage, stage.sum_operand)) {
            dst = operand; // accumulate in place: nothing reads the operand afterwards
        } else {
            dst = memory(pd.dst_desc(), engine);
            add_reorder(plan, operand, dst);
        }
    } else {
        dst = memory(pd.dst_desc(), engine);
    }
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
    if (has_bias) args[DNNL_ARG_BIAS] = constant(node.name + "/bias", node.bias);
    plan.steps.push_back({conv(pd), std::move(args)});
    plan.values[node.output] = dst;
    plan.values[stage.output] = dst;
}

void InferenceEngine::Impl::build_inner_product(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    memory src = plan.values.at(node.inputs[0]);
    const int64_t out_features = node.weight.dims[0];
    // A flattened NCHW value arrives as its 4-D (blocked) memory; the weights are viewed as
    // [out, C, H, W], which is the same row-major data as [out, C*H*W].
    memory::dims w_dims{out_features};
    const memory::dims src_dims = src.get_desc().dims();
    w_dims.insert(w_dims.end(), src_dims.begin() + 1, src_dims.end());
    const memory::desc w_user = plain_desc(w_dims);
    const bool has_bias = !node.bias.empty();
    const memory::desc bias_md({out_features}, dt::f32, tag::a);
    const memory::desc w_any(w_dims, dt::f32, tag::any);
    const memory::desc dst_md({plan.n, out_features}, dt::f32, tag::ab);
    using ip = dnnl::inner_product_forward;
    const auto prop = dnnl::prop_kind::forward_inference;
    auto make_pd = [&](const memory::desc& src_md) {
        const ip::desc desc = has_bias ? ip::desc(prop, src_md, w_any, bias_md, dst_md)
                                       : ip::desc(prop, src_md, w_any, dst_md);
        return ip::primitive_desc(desc, attr_with(eltwise_post_op(stage.eltwise)), engine);
    };
    ip::primitive_desc pd;
    try {
        pd = make_pd(src.get_desc());
    } catch (const dnnl::error&) { // layout not accepted: let oneDNN choose and reorder to it
        pd = make_pd(memory::desc(src_dims, dt::f32, tag::any));
        src = as_layout(plan, node.inputs[0], pd.src_desc());
    }
    const memory weights = weights_for(node, pd.weights_desc(), w_user);
    memory dst(pd.dst_desc(), engine);
    std::unordered_map<int, memory> args{
        {DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst}};
    if (has_bias) args[DNNL_ARG_BIAS] = constant(node.name + "/bias", node.bias);
    plan.steps.push_back({ip(pd), std::move(args)});
    plan.values[node.output] = dst;
    plan.values[stage.output] = dst;
}

void InferenceEngine::Impl::build_pool(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    const memory::dims dst_dims = with_batch(plan.n, graph.shapes.at(node.output));
    const auto pd = pooling_inference(node, src.get_desc(), dst_dims, engine);
    memory dst(pd.dst_desc(), engine);
    plan.steps.push_back({dnnl::pooling_forward(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    plan.values[stage.output] = dst;
}

void InferenceEngine::Impl::build_add(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const memory a = plan.values.at(node.inputs.at(0));
    const memory b = as_layout(plan, node.inputs.at(1), a.get_desc());
    using binary = dnnl::binary;
    const binary::desc desc(dnnl::algorithm::binary_add, a.get_desc(), b.get_desc(), a.get_desc());
    const binary::primitive_desc pd(desc, attr_with(eltwise_post_op(stage.eltwise)), engine);
    memory dst(pd.dst_desc(), engine);
    plan.steps.push_back(
        {binary(pd), {{DNNL_ARG_SRC_0, a}, {DNNL_ARG_SRC_1, b}, {DNNL_ARG_DST, dst}}});
    plan.values[node.output] = dst;
    plan.values[stage.output] = dst;
}

void InferenceEngine::Impl::build_eltwise(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    using eltwise = dnnl::eltwise_forward;
    const bool relu = node.op == Op::relu;
    const eltwise::desc desc(dnnl::prop_kind::forward_inference,
                             relu ? dnnl::algorithm::eltwise_relu : dnnl::algorithm::eltwise_clip,
                             src.get_desc(), relu ? 0.0f : node.clip_min,
                             relu ? 0.0f : node.clip_max);
    const eltwise::primitive_desc pd(desc, engine);
    memory dst(pd.dst_desc(), engine);
    plan.steps.push_back({eltwise(pd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    plan.values[stage.output] = dst;
}

void InferenceEngine::Impl::build_batch_norm(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    using bn = dnnl::batch_normalization_forward;
    const auto flags = dnnl::normalization_flags::use_global_stats |
                       dnnl::normalization_flags::use_scale | dnnl::normalization_flags::use_shift;
    const bn::desc desc(dnnl::prop_kind::forward_inference, src.get_desc(), node.epsilon, flags);
    const bn::primitive_desc pd(desc, engine);
    memory dst(pd.dst_desc(), engine);
    plan.steps.push_back({bn(pd),
                          {{DNNL_ARG_SRC, src},
                           {DNNL_ARG_DST, dst},
                           {DNNL_ARG_MEAN, constant(node.name + "/mean", node.mean)},
                           {DNNL_ARG_VARIANCE, constant(node.name + "/var", node.var)},
                           {DNNL_ARG_SCALE, constant(node.name + "/gamma", node.weight)},
                           {DNNL_ARG_SHIFT, constant(node.name + "/beta", node.bias)}}});
    plan.values[stage.output] = dst;
}

// Flatten costs nothing when only inner products read it (they take the 4-D memory directly);
// otherwise the value is laid out row-major and viewed as [n, features].
void InferenceEngine::Impl::build_flatten(Plan& plan, const Stage& stage) {
    const Node& node = *stage.node;
    const memory src = plan.values.at(node.inputs[0]);
    bool only_inner_products = node.output != graph.output;
    if (auto it = readers.find(node.output); it != readers.end())
        for (int reader : it->second)
            only_inner_products &= graph.nodes[reader].op == Op::fully_connected;
    if (only_inner_products) {
        plan.values[node.output] = src;
        return;
    }
    plan.values[node.output] = row_major_view(plan, src);
}

InferenceEngine::InferenceEngine(const Graph& graph, int64_t batch)
    : impl_(std::make_unique<Impl>(graph, batch)) {}

InferenceEngine::~InferenceEngine() = default;

const float* InferenceEngine::run(const float* images, int64_t n) {
    Impl& im = *impl_;
    if (n < 0 || n > im.batch)
        throw Error("inference: run() got " + std::to_string(n) +
                    " images; the engine was built for batches of at most " +
                    std::to_string(im.batch));
    if (n == 0) return im.logits.data();
    if (!images) throw Error("inference: run() got no image buffer for " + std::to_string(n) + " images");
    Plan& plan = im.plan_for(n);
    plan.input.set_data_handle(const_cast<float*>(images)); // only read: it is a conv/reorder source
    for (Step& step : plan.steps) step.primitive.execute(im.stream, step.args);
    im.stream.wait();
    std::memcpy(im.logits.data(), plan.output.get_data_handle(),
                static_cast<size_t>(n * im.classes) * sizeof(float));
    return im.logits.data();
}

void InferenceEngine::prepare(int64_t n) {
    if (n < 1 || n > impl_->batch)
        throw Error("inference: prepare() got " + std::to_string(n) +
                    " images; the engine was built for batches of 1 to " +
                    std::to_string(impl_->batch));
    impl_->plan_for(n);
}

int64_t InferenceEngine::batch() const { return impl_->batch; }
int64_t InferenceEngine::num_classes() const { return impl_->classes; }
int64_t InferenceEngine::image_size() const { return impl_->image_floats; }

} // namespace mps
