#include "evaluator/train/train_layers.h"

#include "evaluator/base/error.h"
#include "evaluator/base/host_chunks.h"
#include "evaluator/engine/graph_builder.h"
#include "evaluator/quant/activation_range.h"

#include <algorithm>
#include <cstring>
#include <memory>

namespace mps {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using onednn::is_reference_impl;
using onednn::plain_desc;

namespace {

memory::desc any_desc(const memory::dims& dims) { return {dims, dt::f32, tag::any}; }

TrainStep reorder_step(const memory& from, const memory& to) {
    return {dnnl::reorder(from, to), {{DNNL_ARG_FROM, from}, {DNNL_ARG_TO, to}}};
}

[[noreturn]] void fail(const Node& node, const std::string& what) {
    throw Error("trainer: node '" + node.name + "' (" + op_name(node.op) + "): " + what);
}

[[noreturn]] void fail_value(const std::string& value, const std::string& what) {
    throw Error("trainer: fake quantization of value '" + value + "': " + what);
}

std::vector<int64_t> spatial_dims(const TrainBuild& b, const Node& node, const std::string& v) {
    const auto& dims = const_cast<TrainBuild&>(b).at(v).dims;
    if (dims.size() != 4) fail(node, "needs an NCHW input, value '" + v + "' is not");
    return dims;
}

// Where a backward primitive writes the gradient of one input: straight into the reader's slot
// when the layouts agree, otherwise into a temporary followed by a reorder into the slot.
memory diff_into_slot(TrainBuild& b, TrainLayer& layer, const std::string& value,
                      const memory::desc& produced, std::vector<TrainStep>& after) {
    memory slot = b.diff_slot(value);
    if (produced == slot.get_desc()) return slot;
    memory temp = b.zeros(produced);
    after.push_back(reorder_step(temp, slot));
    (void)layer;
    return temp;
}

void append(std::vector<TrainStep>& to, std::vector<TrainStep>& from) {
    for (TrainStep& s : from) to.push_back(std::move(s));
    from.clear();
}

// The weight (and bias) gradient step of a conv or fully connected layer: into the parameter's
// gradient directly, or through a temporary in the primitive's layout and a reorder.
template <class Primitive>
void append_weights_backward(TrainBuild& b, TrainLayer& layer,
                             const typename Primitive::primitive_desc& bww, const memory& src,
                             const memory& diff_dst, const TrainParameter& w,
                             const TrainParameter* bias) {
    memory dw = w.grad;
    const bool reorder_dw = bww.diff_weights_desc() != w.value.get_desc();
    if (reorder_dw) dw = b.zeros(bww.diff_weights_desc());
    TrainStep wstep{Primitive(bww),
                    {{DNNL_ARG_SRC, src}, {DNNL_ARG_DIFF_DST, diff_dst}, {DNNL_ARG_DIFF_WEIGHTS, dw}}};
    if (bias) wstep.args[DNNL_ARG_DIFF_BIAS] = bias->grad;
    layer.backward.push_back(std::move(wstep));
    if (reorder_dw) layer.backward.push_back(reorder_step(dw, w.grad));
}

// The input gradient step of a conv or fully connected layer reading value `in`, with the weights
// reordered first when the backward-data primitive wants another layout.
template <class Primitive>
void append_data_backward(TrainBuild& b, TrainLayer& layer, const std::string& in,
                          const typename Primitive::primitive_desc& bwd, const memory& diff_dst,
                          const TrainParameter& w) {
    memory bwd_weights = w.value;
    if (bwd.weights_desc() != w.value.get_desc()) {
        bwd_weights = b.zeros(bwd.weights_desc());
        layer.backward.push_back(reorder_step(w.value, bwd_weights));
    }
    std::vector<TrainStep> after;
    // A src reorder in forward means the gradient comes back in the primitive's layout.
    const memory dsrc = diff_into_slot(b, layer, in, bwd.diff_src_desc(), after);
    layer.backward.push_back({Primitive(bwd),
                              {{DNNL_ARG_DIFF_DST, diff_dst},
                               {DNNL_ARG_WEIGHTS, bwd_weights},
                               {DNNL_ARG_DIFF_SRC, dsrc}}});
    append(layer.backward, after);
}

dnnl::prop_kind forward_kind(const TrainBuild& b) {
    return b.training() ? dnnl::prop_kind::forward_training : dnnl::prop_kind::forward_inference;
}

// The output dims {N, O, OH, OW} of conv `n` on its input, after checking the weights fit.
memory::dims conv_output_dims(TrainBuild& b, const Node& n) {
    const auto sd = spatial_dims(b, n, n.inputs[0]);
    const int64_t N = sd[0], C = sd[1], H = sd[2], W = sd[3];
    if (n.weight.dims.size() != 4) fail(n, "weight must be OIHW");
    const int64_t O = n.weight.dims[0], G = n.groups;
    if (G < 1 || C % G || O % G || n.weight.dims[1] != C / G)
        fail(n, "weight does not match the input channels and groups");
    const int64_t KH = n.kernel[0], KW = n.kernel[1];
    const int64_t OH = (H + n.pad_begin[0] + n.pad_end[0] - (n.dilation[0] * (KH - 1) + 1)) /
                           n.stride[0] + 1;
    const int64_t OW = (W + n.pad_begin[1] + n.pad_end[1] - (n.dilation[1] * (KW - 1) + 1)) /
                           n.stride[1] + 1;
    if (OH < 1 || OW < 1) fail(n, "kernel larger than the padded input");
    return {N, O, OH, OW};
}

// The three convolution primitives of one conv, planned together.
struct ConvPlan {
    dnnl::convolution_forward::primitive_desc fwd;
    dnnl::convolution_backward_weights::primitive_desc bww;
    dnnl::convolution_backward_data::primitive_desc bwd;
    bool slow = false;
    explicit operator bool() const { return bool(fwd); }
};

// The plan for source and destination layout hints: forward, then (training) the weight
// gradient and (when the input needs one) the data gradient.
ConvPlan conv_plan(TrainBuild& b, const onednn::ConvGeometry& geometry,
                   const memory::desc& bias_md, bool data_gradient,
                   const memory::desc& src_hint, const memory::desc& dst_hint) {
    const onednn::ConvGeometry& g = geometry;
    ConvPlan p;
    const auto d = onednn::conv_forward_desc(g, forward_kind(b), src_hint, any_desc(g.weights),
                                             &bias_md, dst_hint);
    p.fwd = dnnl::convolution_forward::primitive_desc(d, b.engine);
    p.slow = is_reference_impl(p.fwd);
    if (!b.training()) return p;
    const dnnl::convolution_backward_weights::desc bww_d(
        dnnl::algorithm::convolution_direct, p.fwd.src_desc(), any_desc(g.weights), bias_md,
        p.fwd.dst_desc(), g.strides, g.dilates, g.pad_l, g.pad_r);
    p.bww = dnnl::convolution_backward_weights::primitive_desc(bww_d, b.engine, p.fwd);
    p.slow |= is_reference_impl(p.bww);
    if (!data_gradient) return p;
    // The fast backward-data kernels want the weights blocked the other way round (e.g.
    // OIhw16o16i instead of OIhw16i16o): let oneDNN choose and reorder the (small) weights.
    const dnnl::convolution_backward_data::desc bwd_d(
        dnnl::algorithm::convolution_direct, p.fwd.src_desc(), any_desc(g.weights),
        p.fwd.dst_desc(), g.strides, g.dilates, g.pad_l, g.pad_r);
    p.bwd = dnnl::convolution_backward_data::primitive_desc(bwd_d, b.engine, p.fwd);
    p.slow |= is_reference_impl(p.bwd);
    return p;
}

void build_conv(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const memory::dims dst_dims = conv_output_dims(b, n);
    const memory::dims sd = spatial_dims(b, n, in);
    const onednn::ConvGeometry geometry = onednn::conv_geometry(n);
    const memory::desc wplain(geometry.weights, dt::f32, geometry.weights_tag);
    const bool has_bias = !n.bias.empty();
    const memory::desc bias_md =
        has_bias ? memory::desc({dst_dims[1]}, dt::f32, tag::x) : memory::desc();

    // The three convolution primitives, planned together so that none of them falls back to the
    // slow reference kernel: reading the input value in its own layout saves a reorder, but the
    // graph input (plain) or a channel count that is not a multiple of the block size (lenet5's
    // 6 channels) needs another layout, found by trying a few. When all are slow, the first that
    // oneDNN could create: correct, just slower.
    const memory::desc src_md = b.desc(in);
    const bool data_gradient = b.training() && b.at(in).needs_grad;
    const std::vector<std::pair<memory::desc, memory::desc>> candidates{
        {in == b.input ? any_desc(sd) : src_md, any_desc(dst_dims)},
        {any_desc(sd), any_desc(dst_dims)},
        {memory::desc(sd, dt::f32, tag::nChw16c), memory::desc(dst_dims, dt::f32, tag::nChw16c)},
        {memory::desc(sd, dt::f32, tag::nhwc), memory::desc(dst_dims, dt::f32, tag::nhwc)},
    };
    const ConvPlan plan = onednn::first_fast<ConvPlan>(
        candidates.size(),
        [&](size_t i) {
            return conv_plan(b, geometry, bias_md, data_gradient, candidates[i].first,
                             candidates[i].second);
        },
        [](const ConvPlan& p) { return p.slow; });
    if (!plan) fail(n, "oneDNN has no convolution for this shape");
    const auto& fwd = plan.fwd;

    memory src = b.value(in);
    if (fwd.src_desc() != src_md) {
        src = b.zeros(fwd.src_desc());
        layer.forward.push_back(reorder_step(b.value(in), src));
    }
    const TrainParameter w = b.add_parameter(n, &Node::weight, fwd.weights_desc(), wplain, true,
                                             true);
    TrainParameter bias;
    if (has_bias) bias = b.add_parameter(n, &Node::bias, bias_md, bias_md, true, false);
    const memory dst = b.define(n.output, fwd.dst_desc(), dst_dims);
    TrainStep step{dnnl::convolution_forward(fwd),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w.value}, {DNNL_ARG_DST, dst}}};
    if (has_bias) step.args[DNNL_ARG_BIAS] = bias.value;
    layer.forward.push_back(std::move(step));
    if (!b.training()) return;

    const memory diff_dst = b.diff(n.output);
    const auto& bww = plan.bww;
    if (bww.diff_dst_desc() != fwd.dst_desc() || bww.src_desc() != fwd.src_desc())
        fail(n, "oneDNN chose different activation layouts for the weight gradient");
    append_weights_backward<dnnl::convolution_backward_weights>(b, layer, bww, src, diff_dst, w,
                                                                has_bias ? &bias : nullptr);
    if (!data_gradient) return;
    append_data_backward<dnnl::convolution_backward_data>(b, layer, in, plan.bwd, diff_dst, w);
}

void build_fully_connected(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const auto sd = b.at(in).dims;
    if (sd.size() != 2) fail(n, "reads value '" + in + "', which is not flattened");
    if (n.weight.dims.size() != 2 || n.weight.dims[1] != sd[1])
        fail(n, "weight does not match the " + std::to_string(sd[1]) + " input features");
    const int64_t N = sd[0], O = n.weight.dims[0];
    const memory::dims wdims{O, sd[1]};
    const memory::desc wplain(wdims, dt::f32, tag::ab);
    const bool has_bias = !n.bias.empty();
    const memory::desc bias_md = has_bias ? memory::desc({O}, dt::f32, tag::x) : memory::desc();
    const memory::desc src_md = b.desc(in);
    const memory::desc dst_md({N, O}, dt::f32, tag::ab);
    const dnnl::inner_product_forward::desc fwd_d(forward_kind(b), src_md, any_desc(wdims),
                                                  bias_md, dst_md);
    const dnnl::inner_product_forward::primitive_desc fwd(fwd_d, b.engine);
    if (fwd.src_desc() != src_md) fail(n, "oneDNN wants a different input layout");
    const TrainParameter w = b.add_parameter(n, &Node::weight, fwd.weights_desc(), wplain, true,
                                             true);
    TrainParameter bias;
    if (has_bias) bias = b.add_parameter(n, &Node::bias, bias_md, bias_md, true, false);
    const memory src = b.value(in);
    const memory dst = b.define(n.output, fwd.dst_desc(), {N, O});
    TrainStep step{dnnl::inner_product_forward(fwd),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, w.value}, {DNNL_ARG_DST, dst}}};
    if (has_bias) step.args[DNNL_ARG_BIAS] = bias.value;
    layer.forward.push_back(std::move(step));
    if (!b.training()) return;

    const memory diff_dst = b.diff(n.output);
    const dnnl::inner_product_backward_weights::desc bww_d(src_md, any_desc(wdims), bias_md,
                                                           fwd.dst_desc());
    const dnnl::inner_product_backward_weights::primitive_desc bww(bww_d, b.engine, fwd);
    append_weights_backward<dnnl::inner_product_backward_weights>(b, layer, bww, src, diff_dst, w,
                                                                  has_bias ? &bias : nullptr);
    if (!b.at(in).needs_grad) return;
    const dnnl::inner_product_backward_data::desc bwd_d(src_md, any_desc(wdims),
                                                        fwd.dst_desc());
    const dnnl::inner_product_backward_data::primitive_desc bwd(bwd_d, b.engine, fwd);
    append_data_backward<dnnl::inner_product_backward_data>(b, layer, in, bwd, diff_dst, w);
}

// With `relu` (the only reader of the batch norm's output) the ReLU is fused into the batch norm
// primitive, which then writes the ReLU's output value directly.
void build_batch_norm(TrainBuild& b, const Node& n, const Node* relu, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const auto dims = b.at(in).dims;
    if (dims.size() < 2) fail(n, "needs an input with channels");
    const int64_t C = dims[1];
    int64_t per_channel = 1; // N*H*W: the number of values each statistic is computed over
    for (size_t i = 0; i < dims.size(); ++i)
        if (i != 1) per_channel *= dims[i];
    const memory::desc md = b.desc(in);
    const memory::desc cmd({C}, dt::f32, tag::x);
    using flags = dnnl::normalization_flags;
    const flags train_flags = relu ? flags::use_scale | flags::use_shift | flags::fuse_norm_relu
                                   : flags::use_scale | flags::use_shift;
    const flags fwd_flags = b.training() ? train_flags : train_flags | flags::use_global_stats;
    const dnnl::batch_normalization_forward::desc fwd_d(forward_kind(b), md, n.epsilon,
                                                        fwd_flags);
    const dnnl::batch_normalization_forward::primitive_desc fwd(fwd_d, b.engine);
    const TrainParameter scale = b.add_parameter(n, &Node::weight, cmd, cmd, true, false);
    const TrainParameter shift = b.add_parameter(n, &Node::bias, cmd, cmd, true, false);
    const TrainParameter mean = b.add_parameter(n, &Node::mean, cmd, cmd, false, false);
    const TrainParameter var = b.add_parameter(n, &Node::var, cmd, cmd, false, false);
    const memory src = b.value(in);
    const std::string& out = relu ? relu->output : n.output;
    layer.output = out;
    const memory dst = b.define(out, fwd.dst_desc(), dims);
    if (!b.training()) {
        layer.forward.push_back({dnnl::batch_normalization_forward(fwd),
                                 {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst},
                                  {DNNL_ARG_SCALE, scale.value}, {DNNL_ARG_SHIFT, shift.value},
                                  {DNNL_ARG_MEAN, mean.value}, {DNNL_ARG_VARIANCE, var.value}}});
        return;
    }
    const memory batch_mean = b.zeros(fwd.mean_desc());
    const memory batch_var = b.zeros(fwd.variance_desc());
    TrainStep step{dnnl::batch_normalization_forward(fwd),
                   {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst},
                    {DNNL_ARG_SCALE, scale.value}, {DNNL_ARG_SHIFT, shift.value},
                    {DNNL_ARG_MEAN, batch_mean}, {DNNL_ARG_VARIANCE, batch_var}}};
    memory workspace; // which outputs the fused ReLU zeroed
    if (relu) {
        workspace = b.zeros(fwd.workspace_desc());
        step.args[DNNL_ARG_WORKSPACE] = workspace;
    }
    layer.forward.push_back(std::move(step));
    // PyTorch's running statistics: momentum 0.1, unbiased variance.
    const float unbias = per_channel > 1 ? static_cast<float>(per_channel) /
                                               static_cast<float>(per_channel - 1)
                                         : 1.0f;
    layer.after_forward = [=] {
        const float* bm = static_cast<const float*>(batch_mean.get_data_handle());
        const float* bv = static_cast<const float*>(batch_var.get_data_handle());
        float* rm = mean.data();
        float* rv = var.data();
        for (int64_t c = 0; c < C; ++c) {
            rm[c] = 0.9f * rm[c] + 0.1f * bm[c];
            rv[c] = 0.9f * rv[c] + 0.1f * bv[c] * unbias;
        }
    };

    const dnnl::batch_normalization_backward::desc bwd_d(dnnl::prop_kind::backward, md, md,
                                                         n.epsilon, train_flags);
    const dnnl::batch_normalization_backward::primitive_desc bwd(bwd_d, b.engine, fwd);
    std::vector<TrainStep> after;
    const memory dsrc = diff_into_slot(b, layer, in, bwd.diff_src_desc(), after);
    TrainStep bstep{dnnl::batch_normalization_backward(bwd),
                    {{DNNL_ARG_SRC, src},
                     {DNNL_ARG_MEAN, batch_mean},
                     {DNNL_ARG_VARIANCE, batch_var},
                     {DNNL_ARG_DIFF_DST, b.diff(out)},
                     {DNNL_ARG_SCALE, scale.value},
                     {DNNL_ARG_SHIFT, shift.value},
                     {DNNL_ARG_DIFF_SRC, dsrc},
                     {DNNL_ARG_DIFF_SCALE, scale.grad},
                     {DNNL_ARG_DIFF_SHIFT, shift.grad}}};
    if (relu) bstep.args[DNNL_ARG_WORKSPACE] = workspace;
    layer.backward.push_back(std::move(bstep));
    append(layer.backward, after);
}

void build_eltwise(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const bool clip = n.op == Op::clip;
    const auto alg = clip ? dnnl::algorithm::eltwise_clip : dnnl::algorithm::eltwise_relu;
    const float alpha = clip ? n.clip_min : 0.0f, beta = clip ? n.clip_max : 0.0f;
    const memory::desc md = b.desc(in);
    const dnnl::eltwise_forward::desc fwd_d(forward_kind(b), alg, md, alpha, beta);
    const dnnl::eltwise_forward::primitive_desc fwd(fwd_d, b.engine);
    const memory src = b.value(in);
    const memory dst = b.define(n.output, fwd.dst_desc(), b.at(in).dims);
    layer.forward.push_back({dnnl::eltwise_forward(fwd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}});
    if (!b.training()) return;
    const dnnl::eltwise_backward::desc bwd_d(alg, md, md, alpha, beta);
    const dnnl::eltwise_backward::primitive_desc bwd(bwd_d, b.engine, fwd);
    std::vector<TrainStep> after;
    const memory dsrc = diff_into_slot(b, layer, in, bwd.diff_src_desc(), after);
    layer.backward.push_back({dnnl::eltwise_backward(bwd),
                              {{DNNL_ARG_SRC, src},
                               {DNNL_ARG_DIFF_DST, b.diff(n.output)},
                               {DNNL_ARG_DIFF_SRC, dsrc}}});
    append(layer.backward, after);
}

void build_pool(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const auto sd = spatial_dims(b, n, in);
    const bool global = n.op == Op::global_average_pool;
    const memory::dims kernel = global ? memory::dims{sd[2], sd[3]}
                                       : memory::dims{n.kernel[0], n.kernel[1]};
    const memory::dims strides = global ? memory::dims{1, 1}
                                        : memory::dims{n.stride[0], n.stride[1]};
    const memory::dims pad_l = global ? memory::dims{0, 0}
                                      : memory::dims{n.pad_begin[0], n.pad_begin[1]};
    const memory::dims pad_r = global ? memory::dims{0, 0}
                                      : memory::dims{n.pad_end[0], n.pad_end[1]};
    const int64_t OH = (sd[2] + pad_l[0] + pad_r[0] - kernel[0]) / strides[0] + 1;
    const int64_t OW = (sd[3] + pad_l[1] + pad_r[1] - kernel[1]) / strides[1] + 1;
    if (OH < 1 || OW < 1) fail(n, "window larger than the padded input");
    const bool max = n.op == Op::max_pool;
    const auto alg = max ? dnnl::algorithm::pooling_max
                         : (n.count_include_pad && !global
                                ? dnnl::algorithm::pooling_avg_include_padding
                                : dnnl::algorithm::pooling_avg_exclude_padding);
    const memory::dims dst_dims{sd[0], sd[1], OH, OW};
    const memory::desc src_md = b.desc(in);
    const dnnl::pooling_forward::desc fwd_d(forward_kind(b), alg, src_md, any_desc(dst_dims),
                                            strides, kernel, pad_l, pad_r);
    const dnnl::pooling_forward::primitive_desc fwd(fwd_d, b.engine);
    const memory src = b.value(in);
    const memory dst = b.define(n.output, fwd.dst_desc(), dst_dims);
    TrainStep step{dnnl::pooling_forward(fwd), {{DNNL_ARG_SRC, src}, {DNNL_ARG_DST, dst}}};
    memory workspace;
    if (max && b.training()) {
        workspace = b.zeros(fwd.workspace_desc());
        step.args[DNNL_ARG_WORKSPACE] = workspace;
    }
    layer.forward.push_back(std::move(step));
    if (!b.training()) return;
    const dnnl::pooling_backward::desc bwd_d(alg, src_md, fwd.dst_desc(), strides, kernel, pad_l,
                                             pad_r);
    const dnnl::pooling_backward::primitive_desc bwd(bwd_d, b.engine, fwd);
    std::vector<TrainStep> after;
    const memory dsrc = diff_into_slot(b, layer, in, bwd.diff_src_desc(), after);
    TrainStep bstep{dnnl::pooling_backward(bwd),
                    {{DNNL_ARG_DIFF_DST, b.diff(n.output)}, {DNNL_ARG_DIFF_SRC, dsrc}}};
    if (max) bstep.args[DNNL_ARG_WORKSPACE] = workspace;
    layer.backward.push_back(std::move(bstep));
    append(layer.backward, after);
}

void build_add(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string &a = n.inputs[0], &c = n.inputs[1];
    if (b.at(a).dims != b.at(c).dims) fail(n, "adds values of different shapes");
    const memory::desc md_a = b.desc(a), md_c = b.desc(c);
    const dnnl::binary::desc d(dnnl::algorithm::binary_add, md_a, md_c, md_a);
    const dnnl::binary::primitive_desc pd(d, b.engine);
    const memory dst = b.define(n.output, md_a, b.at(a).dims);
    layer.forward.push_back({dnnl::binary(pd),
                             {{DNNL_ARG_SRC_0, b.value(a)},
                              {DNNL_ARG_SRC_1, b.value(c)},
                              {DNNL_ARG_DST, dst}}});
    if (!b.training()) return;
    // d(a + c) fans the output gradient out to both operands unchanged: where it is safe the
    // operand's gradient slot simply shares the output gradient's buffer, otherwise it is copied.
    const memory diff_dst = b.diff(n.output);
    for (const std::string& v : n.inputs) {
        if (!b.at(v).needs_grad) continue;
        int slot_index = 0;
        memory slot = b.diff_slot(v, &slot_index);
        // Slot 0 of a value with several readers receives their sum, so it must own its buffer;
        // x + x needs two distinct slots for the same reason.
        const bool shareable = (slot_index > 0 || b.at(v).diffs.size() == 1) && a != c &&
                               slot.get_desc() == diff_dst.get_desc();
        if (shareable) slot.set_data_handle(diff_dst.get_data_handle());
        else layer.backward.push_back(reorder_step(diff_dst, slot));
    }
}

void build_flatten(TrainBuild& b, const Node& n, TrainLayer& layer) {
    const std::string& in = n.inputs[0];
    const auto dims = b.at(in).dims;
    const int64_t features = Tensor::count(dims) / dims[0];
    const memory dst = b.define(n.output, plain_desc({dims[0], features}), {dims[0], features});
    // The plain NCHW view of the flattened buffer: flatten is a reorder to the plain layout.
    const memory view(plain_desc(dims), b.engine, dst.get_data_handle());
    layer.forward.push_back(reorder_step(b.value(in), view));
    if (!b.training() || !b.at(in).needs_grad) return;
    const memory diff_view(plain_desc(dims), b.engine, b.diff(n.output).get_data_handle());
    layer.backward.push_back(reorder_step(diff_view, b.diff_slot(in)));
}

// 1 at the logical elements of a buffer of layout `desc`, 0 in its padding (blocked layouts pad
// channels to the block size); empty when the layout has no padding.
std::shared_ptr<std::vector<uint8_t>> logical_elements(const TrainBuild& b,
                                                       const memory::desc& desc,
                                                       const std::vector<int64_t>& dims) {
    const size_t stored = desc.get_size() / sizeof(float);
    if (stored == static_cast<size_t>(Tensor::count(dims))) return nullptr;
    const memory ones(plain_desc(dims), b.engine);
    float* o = static_cast<float*>(ones.get_data_handle());
    std::fill(o, o + Tensor::count(dims), 1.0f);
    const memory marked = b.zeros(desc); // the reorder writes only the logical elements
    dnnl::stream stream(b.engine);
    dnnl::reorder(ones, marked).execute(stream, {{DNNL_ARG_FROM, ones}, {DNNL_ARG_TO, marked}});
    stream.wait();
    const float* m = static_cast<const float*>(marked.get_data_handle());
    auto mask = std::make_shared<std::vector<uint8_t>>(stored);
    for (size_t i = 0; i < stored; ++i) (*mask)[i] = m[i] != 0.0f;
    return mask;
}

// The memories of a fake-quant layer from `in` to `out`: its input, its new output (same
// layout), their element count with padding and, for a padded layout, the logical elements.
struct FakeQuantMemories {
    memory::desc md;
    memory src, dst;
    int64_t n = 0;
    std::shared_ptr<std::vector<uint8_t>> logical;
};

FakeQuantMemories fake_quant_memories(TrainBuild& b, const std::string& in, const std::string& out) {
    FakeQuantMemories m;
    m.md = b.desc(in);
    const std::vector<int64_t> dims = b.at(in).dims;
    m.src = b.value(in);
    m.dst = b.define(out, m.md, dims);
    m.n = static_cast<int64_t>(m.md.get_size() / sizeof(float));
    m.logical = logical_elements(b, m.md, dims);
    return m;
}

// The gradient memories of the layer's output and of its input slot (same layout as the value).
std::pair<memory, memory> fake_quant_diffs(TrainBuild& b, const std::string& in,
                                           const std::string& out, const memory::desc& md) {
    const memory diff_dst = b.diff(out);
    const memory diff_src = b.diff_slot(in);
    if (diff_src.get_desc() != md) fail_value(in, "its gradient has another layout than its value");
    return {diff_dst, diff_src};
}

// A fake-quant layer whose elementwise work is the caller's ActivationHook.
void build_hooked_fake_quant(TrainBuild& b, const std::string& in, const std::string& out,
                             std::shared_ptr<ActivationHook> hook, TrainLayer& layer) {
    const FakeQuantMemories m = fake_quant_memories(b, in, out);
    // The lambdas hold `m`, and with it the shared mask behind `inside`: a raw pointer alone
    // would outlive the mask.
    layer.host_forward = [=] {
        const uint8_t* inside = m.logical ? m.logical->data() : nullptr;
        hook->forward(static_cast<const float*>(m.src.get_data_handle()),
                      static_cast<float*>(m.dst.get_data_handle()), m.n, inside);
    };
    // Backward runs even when `in` needs no gradient (the images): the hook learns from it. Its
    // dx then goes to scratch memory.
    if (!b.training()) return;
    const auto [diff_dst, diff_src] = fake_quant_diffs(b, in, out, m.md);
    // Structured bindings are copied by init-captures: clang before 16 cannot capture them.
    layer.host_backward = [=, diff_dst = diff_dst, diff_src = diff_src] {
        const uint8_t* inside = m.logical ? m.logical->data() : nullptr;
        hook->backward(static_cast<const float*>(m.src.get_data_handle()),
                       static_cast<const float*>(diff_dst.get_data_handle()),
                       static_cast<float*>(diff_src.get_data_handle()), m.n, inside);
    };
}

void build_fake_quant(TrainBuild& b, const std::string& in, const std::string& out,
                      std::shared_ptr<const ActivationQuantizer> quantizer, TrainLayer& layer) {
    const FakeQuantMemories m = fake_quant_memories(b, in, out);
    const memory src = m.src, dst = m.dst;
    const int64_t n = m.n;
    const auto logical = m.logical;
    // passes[i]: the quantizer did not clip element i, so the straight-through gradient flows.
    auto passes = std::make_shared<std::vector<uint8_t>>(static_cast<size_t>(n), 0);
    layer.host_forward = [=] {
        const ActivationQuantizer q = *quantizer; // its range may have changed since the last pass
        const ActivationClipMask clip(q.range, q.bits, q.is_signed);
        const float* x = static_cast<const float*>(src.get_data_handle());
        float* y = static_cast<float*>(dst.get_data_handle());
        uint8_t* pass = passes->data();
        const int64_t tasks = host_chunk_count(n);
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (int64_t t = 0; t < tasks; ++t) {
            const auto [begin, size] = host_chunk_at(t, n);
            const int64_t end = begin + size;
            std::copy(x + begin, x + end, y + begin);
            fake_quantize_activation(y + begin, end - begin, q.range, q.bits, q.is_signed);
            for (int64_t i = begin; i < end; ++i) {
                const bool inside = !logical || (*logical)[static_cast<size_t>(i)];
                if (!inside) y[i] = 0.0f;
                pass[i] = inside && clip.passes(x[i]);
            }
        }
    };
    if (!b.training() || !b.at(in).needs_grad) return;
    const auto [diff_dst, diff_src] = fake_quant_diffs(b, in, out, m.md);
    layer.host_backward = [=, diff_dst = diff_dst, diff_src = diff_src] { // (as above)
        const float* dy = static_cast<const float*>(diff_dst.get_data_handle());
        float* dx = static_cast<float*>(diff_src.get_data_handle());
        const uint8_t* pass = passes->data();
#pragma omp parallel for schedule(static) if (n > host_chunk)
        for (int64_t i = 0; i < n; ++i) dx[i] = pass[i] ? dy[i] : 0.0f;
    };
}

} // namespace

TrainValue& TrainBuild::at(const std::string& name) {
    auto it = values.find(name);
    if (it == values.end() || !it->second.value)
        throw Error("trainer: value '" + name + "' is read before any node writes it");
    return it->second;
}

memory TrainBuild::zeros(const memory::desc& desc) const {
    memory m(desc, engine);
    std::memset(m.get_data_handle(), 0, desc.get_size());
    return m;
}

memory TrainBuild::define(const std::string& name, const memory::desc& desc,
                          std::vector<int64_t> dims) {
    TrainValue& v = values[name];
    v.dims = std::move(dims);
    v.value = zeros(desc);
    if (v.needs_grad) {
        // At least one slot, so a value nobody reads still has a (zero) gradient.
        for (int i = 0; i < std::max(v.readers, 1); ++i) v.diffs.push_back(zeros(desc));
    }
    return v.value;
}

memory TrainBuild::diff_slot(const std::string& name, int* index) {
    TrainValue& v = at(name);
    if (!v.needs_grad) return zeros(v.value.get_desc());
    if (v.next_slot >= static_cast<int>(v.diffs.size()))
        throw Error("trainer: value '" + name + "' has more readers than counted");
    if (index) *index = v.next_slot;
    return v.diffs[static_cast<size_t>(v.next_slot++)];
}

TrainParameter TrainBuild::add_parameter(const Node& node, Tensor Node::*field,
                                         const memory::desc& internal, const memory::desc& plain,
                                         bool trainable, bool decay) {
    TrainParameter p;
    p.node = node.name;
    p.field = field;
    p.trainable = trainable && training();
    p.decay = decay;
    p.value = zeros(internal);
    if (p.trainable) p.grad = zeros(internal);
    p.plain = plain;
    parameters->push_back(p);
    return p;
}

TrainLayer build_train_layer(TrainBuild& b, const Node& n, const Node* fused_relu) {
    TrainLayer layer;
    layer.node = n.name;
    layer.output = n.output;
    if (!accepts_inputs(n.op, n.inputs.size()))
        fail(n, "has " + std::to_string(n.inputs.size()) + " inputs, expected " +
                    expected_inputs_text(n.op));
    try {
        switch (n.op) {
        case Op::concat:
        case Op::mul:
        case Op::sigmoid:
        case Op::hard_sigmoid:
        case Op::hard_swish:
        case Op::channel_affine:
        case Op::channel_shuffle:
        case Op::channel_slice: // inference and search run them; their backward is not written yet
            fail(n, std::string("fine-tuning does not support ") + op_name(n.op) +
                        " yet; evaluate and search this model without fine-tuning");
        case Op::conv: build_conv(b, n, layer); break;
        case Op::fully_connected: build_fully_connected(b, n, layer); break;
        case Op::batch_norm: build_batch_norm(b, n, fused_relu, layer); break;
        case Op::relu:
        case Op::clip: build_eltwise(b, n, layer); break;
        case Op::max_pool:
        case Op::average_pool:
        case Op::global_average_pool: build_pool(b, n, layer); break;
        case Op::add: build_add(b, n, layer); break;
        case Op::flatten: build_flatten(b, n, layer); break;
        }
    } catch (const dnnl::error& e) {
        fail(n, std::string("oneDNN cannot build it: ") + e.what());
    }
    return layer;
}

TrainLayer build_fake_quant_layer(TrainBuild& b, const std::string& in, const std::string& out,
                                  std::shared_ptr<const ActivationQuantizer> quantizer) {
    TrainLayer layer;
    layer.node = out;
    layer.output = out;
    try {
        if (quantizer->hook)
            build_hooked_fake_quant(b, in, out, quantizer->hook, layer);
        else
            build_fake_quant(b, in, out, std::move(quantizer), layer);
    } catch (const dnnl::error& e) {
        fail_value(in, std::string("oneDNN cannot build it: ") + e.what());
    }
    return layer;
}

} // namespace mps
