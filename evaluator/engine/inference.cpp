#include "evaluator/engine/inference.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/graph_builder.h"
#include "evaluator/engine/onednn_util.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <cstring>
#include <functional>
#include <iterator>
#include <map>
#include <optional>
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

// Everything to run one batch size: primitives, their arguments and the activation memories.
struct Plan : PlanMemory {
    memory output; // logits, plain [n, classes]
    std::vector<Step> steps;
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
    Readers readers;
    std::optional<NodeBuilder> nodes; // the non-layer nodes' primitives
    std::map<std::string, std::vector<memory>> weights; // per node, in each layout asked for
    std::map<std::string, memory> constants;             // biases
    PlansBySize<Plan> plans;
    std::vector<float> logits;

    Impl(const Graph& source, int64_t batch_size);
    bool sum_in_place_allowed(const Stage& stage, const std::string& operand) const;
    Plan& plan_for(int64_t n) {
        return plans.at(n, [this](int64_t size) { return build_plan(size); });
    }
    std::unique_ptr<Plan> build_plan(int64_t n);

    // Helpers for build_plan (the other node kinds are NodeBuilder's).
    memory as_layout(Plan& plan, const std::string& value, const memory::desc& want) {
        return nodes->as_layout(plan, plan.steps, value, want);
    }
    memory weights_for(const Node& node, const memory::desc& want, const memory::desc& user);
    memory constant(const std::string& key, const Tensor& t);
    void build_conv(Plan& plan, const Stage& stage);
    void build_inner_product(Plan& plan, const Stage& stage);
};

InferenceEngine::Impl::Impl(const Graph& source, int64_t batch_size) : batch(batch_size) {
    if (batch < 1)
        throw Error("inference: batch size must be at least 1, got " + std::to_string(batch));
    graph = source;
    infer_shapes(graph);
    fold_batch_norm(graph);
    readers = readers_of(graph);
    nodes.emplace(graph, readers, engine);
    classes = Tensor::count(graph.shapes.at(graph.output));
    image_floats = Tensor::count(graph.input_shape);
    stages = fuse_stages(graph, readers, true);
    logits.assign(static_cast<size_t>(batch * classes), 0.0f);
    plan_for(batch); // creates the primitives and reorders the weights now
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

std::unique_ptr<Plan> InferenceEngine::Impl::build_plan(int64_t n) {
    auto plan = std::make_unique<Plan>();
    nodes->begin(*plan, n);
    for (const Stage& stage : stages) {
        try {
            switch (stage.node->op) {
            case Op::conv: build_conv(*plan, stage); break;
            case Op::fully_connected: build_inner_product(*plan, stage); break;
            case Op::max_pool:
            case Op::average_pool:
            case Op::global_average_pool: nodes->build_pool(*plan, stage, plan->steps); break;
            case Op::add:
            case Op::mul: nodes->build_binary(*plan, stage, plan->steps); break;
            case Op::concat: nodes->build_concat(*plan, stage, plan->steps); break;
            case Op::relu:
            case Op::clip:
            case Op::sigmoid:
            case Op::hard_sigmoid:
            case Op::hard_swish: nodes->build_eltwise(*plan, stage, plan->steps); break;
            case Op::channel_affine:
            case Op::channel_shuffle:
            case Op::channel_slice: nodes->build_channel_op(*plan, stage, plan->steps); break;
            case Op::batch_norm: throw Error(where(*stage.node) + ": unexpected batch_norm");
            case Op::flatten: nodes->build_flatten(*plan, stage, plan->steps); break;
            }
        } catch (const dnnl::error& e) {
            throw Error(where(*stage.node) + ": oneDNN could not create a primitive for it (" +
                        e.what() + ")");
        }
    }
    plan->output = nodes->row_major_view(*plan, plan->steps, plan->values.at(graph.output));
    return plan;
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
    const memory::dims src_dims = with_batch(plan.n, graph.shapes.at(node.inputs[0]));
    const memory::dims dst_dims = with_batch(plan.n, graph.shapes.at(node.output));
    const ConvGeometry geometry = conv_geometry(node);
    const memory::desc w_user(geometry.weights, dt::f32, geometry.weights_tag);
    const bool has_bias = !node.bias.empty();
    const memory::desc bias_md({node.weight.dims[0]}, dt::f32, tag::a);
    const memory::desc w_any(geometry.weights, dt::f32, tag::any);
    dnnl::post_ops ops;
    if (!stage.sum_operand.empty()) ops.append_sum(1.0f);
    ops = eltwise_post_op(stage.eltwise, ops);
    // Layout choice. Left entirely to oneDNN, 2.6 picks brgconv on nhwc: resnet8 ran about 25 %
    // slower that way than with the direct jit kernels on nChw16c (its 1-channel stem ~10x
    // slower). So the destination is fixed to nChw16c (nChw8c below AVX-512), and the source is
    // first offered in the layout it already has (no reorder: a 1-channel stem reads the nchw
    // input, a 6-channel conv reads its padded blocked input), then in a layout oneDNN picks.
    // Shapes the blocked kernels do not cover (they would fall to the reference kernel) keep
    // oneDNN's own choice.
    const tag blocked = blocked_activation_tag();
    const std::pair<memory::desc, tag> tries[] = {
        {plan.values.at(node.inputs[0]).get_desc(), blocked},
        {memory::desc(src_dims, dt::f32, tag::any), blocked},
        {memory::desc(src_dims, dt::f32, tag::any), tag::any}};
    using conv = dnnl::convolution_forward;
    const conv::primitive_desc pd = first_fast<conv::primitive_desc>(
        std::size(tries),
        [&](size_t i) {
            const memory::desc dst_md(dst_dims, dt::f32, tries[i].second);
            const auto desc = conv_forward_desc(geometry, dnnl::prop_kind::forward_inference,
                                                tries[i].first, w_any,
                                                has_bias ? &bias_md : nullptr, dst_md);
            return conv::primitive_desc(desc, attr_with(ops), engine, true);
        },
        [](const conv::primitive_desc& p) { return is_reference_impl(p); });
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
            plan.steps.push_back(reorder_step(operand, dst));
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
