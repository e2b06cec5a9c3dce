#include "evaluator/ref/reference.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <map>
#include <string>

namespace mps {
namespace {

[[noreturn]] void fail(const Node& node, const std::string& problem) {
    throw Error("reference: node '" + node.name + "' (" + op_name(node.op) + "): " + problem);
}

void require_4d(const Tensor& src, const Node& node) {
    if (src.dims.size() != 4)
        fail(node, "expects an NCHW input, got " + dims_text(src.dims));
}

// Output extent of a sliding window along one axis.
int64_t window_out(int64_t in, int64_t kernel, int64_t stride, int64_t pad_begin, int64_t pad_end,
                   int64_t dilation) {
    return (in + pad_begin + pad_end - dilation * (kernel - 1) - 1) / stride + 1;
}

struct Nchw {
    int64_t n, c, h, w;
    explicit Nchw(const Tensor& t) : n(t.dims[0]), c(t.dims[1]), h(t.dims[2]), w(t.dims[3]) {}
    int64_t at(int64_t in, int64_t ic, int64_t y, int64_t x) const {
        return ((in * c + ic) * h + y) * w + x;
    }
};

enum class PoolKind { max, average };

Tensor pool(const Tensor& src, const Node& node, PoolKind kind) {
    require_4d(src, node);
    const Nchw s(src);
    const int64_t oh = window_out(s.h, node.kernel[0], node.stride[0], node.pad_begin[0],
                                  node.pad_end[0], 1);
    const int64_t ow = window_out(s.w, node.kernel[1], node.stride[1], node.pad_begin[1],
                                  node.pad_end[1], 1);
    if (oh <= 0 || ow <= 0) fail(node, "window larger than the padded input " + dims_text(src.dims));
    Tensor dst({s.n, s.c, oh, ow});
    float* out = dst.data.data();
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = 0; c < s.c; ++c)
            for (int64_t y = 0; y < oh; ++y)
                for (int64_t x = 0; x < ow; ++x) {
                    double sum = 0.0;
                    float best = -std::numeric_limits<float>::infinity();
                    int64_t inside = 0;
                    for (int64_t ky = 0; ky < node.kernel[0]; ++ky)
                        for (int64_t kx = 0; kx < node.kernel[1]; ++kx) {
                            const int64_t iy = y * node.stride[0] - node.pad_begin[0] + ky;
                            const int64_t ix = x * node.stride[1] - node.pad_begin[1] + kx;
                            if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                            const float v = src.data[s.at(n, c, iy, ix)];
                            best = std::max(best, v);
                            sum += v;
                            ++inside;
                        }
                    if (kind == PoolKind::max) {
                        *out++ = best;
                    } else {
                        const int64_t divisor =
                            node.count_include_pad ? node.kernel[0] * node.kernel[1] : inside;
                        *out++ = static_cast<float>(sum / static_cast<double>(divisor));
                    }
                }
    return dst;
}

} // namespace

Tensor reference_conv(const Tensor& src, const Node& node) {
    require_4d(src, node);
    const Nchw s(src);
    const auto& w = node.weight;
    if (w.dims.size() != 4) fail(node, "weight must be OIHW, got " + dims_text(w.dims));
    const int64_t groups = node.groups;
    const int64_t oc = w.dims[0], icg = w.dims[1], kh = w.dims[2], kw = w.dims[3];
    if (groups < 1 || s.c != icg * groups || oc % groups != 0)
        fail(node, "weight " + dims_text(w.dims) + " with " + std::to_string(groups) +
                       " groups does not fit an input with " + std::to_string(s.c) + " channels");
    if (!node.bias.empty() && node.bias.numel() != oc)
        fail(node, "bias has " + std::to_string(node.bias.numel()) + " values, expected " +
                       std::to_string(oc));
    const int64_t ocg = oc / groups;
    const int64_t oh = window_out(s.h, kh, node.stride[0], node.pad_begin[0], node.pad_end[0],
                                  node.dilation[0]);
    const int64_t ow = window_out(s.w, kw, node.stride[1], node.pad_begin[1], node.pad_end[1],
                                  node.dilation[1]);
    if (oh <= 0 || ow <= 0) fail(node, "kernel larger than the padded input " + dims_text(src.dims));
    Tensor dst({s.n, oc, oh, ow});
    float* out = dst.data.data();
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t o = 0; o < oc; ++o) {
            const int64_t g = o / ocg;
            for (int64_t y = 0; y < oh; ++y)
                for (int64_t x = 0; x < ow; ++x) {
                    double acc = node.bias.empty() ? 0.0 : node.bias.data[o];
                    for (int64_t i = 0; i < icg; ++i)
                        for (int64_t ky = 0; ky < kh; ++ky)
                            for (int64_t kx = 0; kx < kw; ++kx) {
                                const int64_t iy =
                                    y * node.stride[0] - node.pad_begin[0] + ky * node.dilation[0];
                                const int64_t ix =
                                    x * node.stride[1] - node.pad_begin[1] + kx * node.dilation[1];
                                if (iy < 0 || iy >= s.h || ix < 0 || ix >= s.w) continue;
                                const double v = src.data[s.at(n, g * icg + i, iy, ix)];
                                acc += v * w.data[((o * icg + i) * kh + ky) * kw + kx];
                            }
                    *out++ = static_cast<float>(acc);
                }
        }
    return dst;
}

Tensor reference_fully_connected(const Tensor& src, const Node& node) {
    if (src.dims.size() != 2) fail(node, "expects a 2-D input, got " + dims_text(src.dims));
    const auto& w = node.weight;
    const int64_t batch = src.dims[0], in = src.dims[1];
    if (w.dims.size() != 2 || w.dims[1] != in)
        fail(node, "weight " + dims_text(w.dims) + " does not fit an input of " +
                       std::to_string(in) + " features");
    const int64_t out_features = w.dims[0];
    if (!node.bias.empty() && node.bias.numel() != out_features)
        fail(node, "bias has " + std::to_string(node.bias.numel()) + " values, expected " +
                       std::to_string(out_features));
    Tensor dst({batch, out_features});
    for (int64_t n = 0; n < batch; ++n)
        for (int64_t o = 0; o < out_features; ++o) {
            double acc = node.bias.empty() ? 0.0 : node.bias.data[o];
            for (int64_t i = 0; i < in; ++i)
                acc += static_cast<double>(src.data[n * in + i]) * w.data[o * in + i];
            dst.data[n * out_features + o] = static_cast<float>(acc);
        }
    return dst;
}

Tensor reference_batch_norm(const Tensor& src, const Node& node) {
    if (src.dims.size() < 2) fail(node, "expects an N x C x ... input, got " + dims_text(src.dims));
    const int64_t batch = src.dims[0], channels = src.dims[1];
    const int64_t spatial = src.numel() / std::max<int64_t>(1, batch * channels);
    for (const Tensor* p : {&node.weight, &node.bias, &node.mean, &node.var})
        if (p->numel() != channels)
            fail(node, "gamma, beta, mean and var must have " + std::to_string(channels) +
                           " values each");
    Tensor dst(src.dims);
    for (int64_t n = 0; n < batch; ++n)
        for (int64_t c = 0; c < channels; ++c) {
            const double inv_std = 1.0 / std::sqrt(static_cast<double>(node.var.data[c]) +
                                                   static_cast<double>(node.epsilon));
            const int64_t base = (n * channels + c) * spatial;
            for (int64_t i = 0; i < spatial; ++i) {
                const double x = src.data[base + i];
                dst.data[base + i] = static_cast<float>(
                    (x - node.mean.data[c]) * inv_std * node.weight.data[c] + node.bias.data[c]);
            }
        }
    return dst;
}

Tensor reference_relu(const Tensor& src) {
    Tensor dst = src;
    for (float& v : dst.data) v = v > 0.0f ? v : 0.0f;
    return dst;
}

Tensor reference_clip(const Tensor& src, const Node& node) {
    Tensor dst = src;
    for (float& v : dst.data) v = std::min(std::max(v, node.clip_min), node.clip_max);
    return dst;
}

Tensor reference_max_pool(const Tensor& src, const Node& node) {
    return pool(src, node, PoolKind::max);
}

Tensor reference_average_pool(const Tensor& src, const Node& node) {
    return pool(src, node, PoolKind::average);
}

Tensor reference_global_average_pool(const Tensor& src) {
    if (src.dims.size() != 4)
        throw Error("reference_global_average_pool: expects an NCHW input, got " +
                    dims_text(src.dims));
    const Nchw s(src);
    Tensor dst({s.n, s.c, 1, 1});
    const int64_t area = s.h * s.w;
    for (int64_t i = 0; i < s.n * s.c; ++i) {
        double sum = 0.0;
        for (int64_t j = 0; j < area; ++j) sum += src.data[i * area + j];
        dst.data[i] = static_cast<float>(sum / static_cast<double>(area));
    }
    return dst;
}

Tensor reference_add(const Tensor& a, const Tensor& b) {
    if (a.dims != b.dims)
        throw Error("reference_add: operands differ in shape (" + dims_text(a.dims) + " vs " +
                    dims_text(b.dims) + ")");
    Tensor dst = a;
    for (int64_t i = 0; i < dst.numel(); ++i) dst.data[i] += b.data[i];
    return dst;
}

Tensor reference_flatten(const Tensor& src) {
    if (src.dims.empty()) throw Error("reference_flatten: input has no batch dimension");
    Tensor dst = src;
    dst.dims = {src.dims[0], src.dims[0] ? src.numel() / src.dims[0] : 0};
    return dst;
}

Tensor reference_concat(const std::vector<const Tensor*>& inputs) {
    if (inputs.empty()) throw Error("reference_concat: no inputs");
    const Tensor& first = *inputs[0];
    if (first.dims.size() != 4)
        throw Error("reference_concat: expects NCHW inputs, got " + dims_text(first.dims));
    std::vector<int64_t> dims = first.dims;
    dims[1] = 0;
    for (const Tensor* t : inputs) {
        if (t->dims.size() != 4 || t->dims[0] != first.dims[0] || t->dims[2] != first.dims[2] ||
            t->dims[3] != first.dims[3])
            throw Error("reference_concat: inputs " + dims_text(first.dims) + " and " +
                        dims_text(t->dims) + " differ in N, H or W");
        dims[1] += t->dims[1];
    }
    Tensor dst(dims);
    float* out = dst.data.data();
    // Per image, each input's channels in turn: NCHW keeps an image's channels contiguous.
    for (int64_t n = 0; n < dims[0]; ++n)
        for (const Tensor* t : inputs) {
            const int64_t per_image = t->numel() / dims[0];
            const float* src = t->data.data() + n * per_image;
            out = std::copy(src, src + per_image, out);
        }
    return dst;
}

Tensor reference_sigmoid(const Tensor& src) {
    Tensor dst = src;
    for (float& v : dst.data) v = static_cast<float>(1.0 / (1.0 + std::exp(-static_cast<double>(v))));
    return dst;
}

Tensor reference_hard_sigmoid(const Tensor& src, float alpha, float beta) {
    Tensor dst = src;
    for (float& v : dst.data)
        v = static_cast<float>(std::clamp(static_cast<double>(alpha) * v + beta, 0.0, 1.0));
    return dst;
}

Tensor reference_hard_swish(const Tensor& src) {
    Tensor dst = src;
    for (float& v : dst.data)
        v = static_cast<float>(v * std::clamp(static_cast<double>(v) / 6.0 + 0.5, 0.0, 1.0));
    return dst;
}

Tensor reference_mul(const Tensor& a, const Tensor& b) {
    if (a.dims == b.dims) {
        Tensor dst = a;
        for (int64_t i = 0; i < dst.numel(); ++i) dst.data[i] *= b.data[i];
        return dst;
    }
    const bool b_is_scale = b.dims.size() == 4 && b.dims[2] == 1 && b.dims[3] == 1;
    const Tensor& x = b_is_scale ? a : b;
    const Tensor& scale = b_is_scale ? b : a;
    if (x.dims.size() != 4 || scale.dims != std::vector<int64_t>{x.dims[0], x.dims[1], 1, 1})
        throw Error("reference_mul: cannot multiply " + dims_text(a.dims) + " by " +
                    dims_text(b.dims) + "; shapes must be equal or [N, C, 1, 1] against [N, C, H, W]");
    Tensor dst = x;
    const int64_t area = x.dims[2] * x.dims[3];
    for (int64_t i = 0; i < dst.numel(); ++i) dst.data[i] *= scale.data[i / area];
    return dst;
}

namespace {

Nchw channel_input(const Tensor& src, const Node& node) {
    require_4d(src, node);
    return Nchw(src);
}

// dst channel `to` of image n := src channel `from` (both NCHW, same H and W).
void copy_channel(const Tensor& src, int64_t src_channels, int64_t from, Tensor& dst,
                  int64_t dst_channels, int64_t to, int64_t n, int64_t area) {
    const float* in = src.data.data() + (n * src_channels + from) * area;
    std::copy(in, in + area, dst.data.data() + (n * dst_channels + to) * area);
}

} // namespace

Tensor reference_channel_affine(const Tensor& src, const Node& node) {
    const Nchw s = channel_input(src, node);
    if (node.weight.numel() != s.c || node.bias.numel() != s.c)
        fail(node, "scale and shift must have " + std::to_string(s.c) + " values each");
    Tensor dst(src.dims);
    for (int64_t i = 0; i < s.n * s.c; ++i) {
        const double a = node.weight.data[i % s.c], b = node.bias.data[i % s.c];
        for (int64_t j = i * s.h * s.w; j < (i + 1) * s.h * s.w; ++j)
            dst.data[j] = static_cast<float>(a * src.data[j] + b);
    }
    return dst;
}

Tensor reference_channel_shuffle(const Tensor& src, const Node& node) {
    const Nchw s = channel_input(src, node);
    if (node.groups < 1 || s.c % node.groups != 0)
        fail(node, std::to_string(node.groups) + " groups do not divide " + std::to_string(s.c) +
                       " channels");
    const int64_t per_group = s.c / node.groups;
    Tensor dst(src.dims);
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t g = 0; g < node.groups; ++g)
            for (int64_t k = 0; k < per_group; ++k)
                copy_channel(src, s.c, g * per_group + k, dst, s.c, k * node.groups + g, n,
                             s.h * s.w);
    return dst;
}

Tensor reference_channel_slice(const Tensor& src, const Node& node) {
    const Nchw s = channel_input(src, node);
    const int64_t begin = node.channel_begin, end = node.channel_end;
    if (begin < 0 || begin >= end || end > s.c)
        fail(node, "channels [" + std::to_string(begin) + ", " + std::to_string(end) +
                       ") are not a non-empty range of " + std::to_string(s.c));
    Tensor dst({s.n, end - begin, s.h, s.w});
    for (int64_t n = 0; n < s.n; ++n)
        for (int64_t c = begin; c < end; ++c)
            copy_channel(src, s.c, c, dst, end - begin, c - begin, n, s.h * s.w);
    return dst;
}

Tensor reference_node(const Node& node, const std::vector<const Tensor*>& inputs) {
    if (!accepts_inputs(node.op, inputs.size()))
        fail(node, std::string("expects ") + expected_inputs_text(node.op) + " inputs, got " +
                       std::to_string(inputs.size()));
    const Tensor& x = *inputs[0];
    switch (node.op) {
    case Op::conv: return reference_conv(x, node);
    case Op::fully_connected: return reference_fully_connected(x, node);
    case Op::batch_norm: return reference_batch_norm(x, node);
    case Op::relu: return reference_relu(x);
    case Op::clip: return reference_clip(x, node);
    case Op::max_pool: return reference_max_pool(x, node);
    case Op::average_pool: return reference_average_pool(x, node);
    case Op::global_average_pool: return reference_global_average_pool(x);
    case Op::add: return reference_add(x, *inputs[1]);
    case Op::flatten: return reference_flatten(x);
    case Op::concat: return reference_concat(inputs);
    case Op::sigmoid: return reference_sigmoid(x);
    case Op::hard_sigmoid: return reference_hard_sigmoid(x, node.alpha, node.beta);
    case Op::hard_swish: return reference_hard_swish(x);
    case Op::mul: return reference_mul(x, *inputs[1]);
    case Op::channel_affine: return reference_channel_affine(x, node);
    case Op::channel_shuffle: return reference_channel_shuffle(x, node);
    case Op::channel_slice: return reference_channel_slice(x, node);
    }
    fail(node, "unknown op");
}

Tensor reference_forward(const Graph& graph, const Tensor& input) {
    std::vector<int64_t> per_image(input.dims.begin() + (input.dims.empty() ? 0 : 1),
                                   input.dims.end());
    if (input.dims.empty() || per_image != graph.input_shape)
        throw Error("reference_forward: the graph expects input images of " +
                    dims_text(graph.input_shape) + ", got a batch of " + dims_text(input.dims));
    std::map<std::string, Tensor> values;
    values[graph.input] = input;
    for (const Node& node : graph.nodes) {
        std::vector<const Tensor*> inputs;
        for (const std::string& name : node.inputs) {
            auto it = values.find(name);
            if (it == values.end())
                fail(node, "input value '" + name + "' is not computed before this node");
            inputs.push_back(&it->second);
        }
        values[node.output] = reference_node(node, inputs);
    }
    auto it = values.find(graph.output);
    if (it == values.end())
        throw Error("reference_forward: no node produces the graph output '" + graph.output + "'");
    return reference_flatten(it->second);
}

} // namespace mps
