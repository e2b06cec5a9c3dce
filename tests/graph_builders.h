#pragma once
// Test helpers: build small Graphs by hand with deterministic random parameters, and compare
// tensors. Parameters are drawn uniformly from +-sqrt(3 / fan_in) so that activations keep a
// variance near one through deep stacks.
#include "evaluator/data/dataset.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace mps::test {

// A small deterministic generator (same numbers on every platform, unlike std distributions).
class Rng {
public:
    explicit Rng(uint64_t seed) : state_(seed * 6364136223846793005ULL + 1442695040888963407ULL) {}
    float uniform(float lo, float hi) {
        state_ = state_ * 6364136223846793005ULL + 1442695040888963407ULL;
        const double unit = static_cast<double>(state_ >> 11) / static_cast<double>(1ULL << 53);
        return lo + static_cast<float>(unit) * (hi - lo);
    }

private:
    uint64_t state_;
};

inline Tensor random_tensor(std::vector<int64_t> dims, Rng& rng, float lo = -1.0f, float hi = 1.0f) {
    Tensor t(std::move(dims));
    for (float& v : t.data) v = rng.uniform(lo, hi);
    return t;
}

// `count` images of per-image `shape` {C, H, W} with pixels uniform in [lo, hi), all labelled 0.
// Round half to even, by hand (no reliance on the floating-point environment): what the
// quantizers' std::nearbyint does in the default rounding mode.
inline float round_half_even(float r) {
    const float f = std::floor(r);
    const float frac = r - f;
    if (frac < 0.5f) return f;
    if (frac > 0.5f) return f + 1.0f;
    return std::fmod(f, 2.0f) == 0.0f ? f : f + 1.0f;
}

inline Dataset random_images(const std::vector<int64_t>& shape, int64_t count, uint64_t seed,
                             float lo = -2.0f, float hi = 2.0f) {
    Rng rng(seed);
    Dataset d;
    d.count = count;
    d.channels = shape[0];
    d.height = shape[1];
    d.width = shape[2];
    d.images.resize(static_cast<size_t>(count * d.image_size()));
    for (float& v : d.images) v = rng.uniform(lo, hi);
    d.labels.assign(static_cast<size_t>(count), 0);
    return d;
}

// A learnable task: the label is the band of rows (of 10) that is brighter.
inline Dataset banded_images(int64_t count, int64_t side, uint64_t seed) {
    Dataset d;
    d.count = count;
    d.channels = 1;
    d.height = d.width = side;
    std::mt19937_64 rng(seed);
    d.images.resize(size_t(count * side * side));
    d.labels.resize(size_t(count));
    for (int64_t i = 0; i < count; ++i) {
        const int label = int(rng() % 10);
        d.labels[size_t(i)] = uint8_t(label);
        for (int64_t p = 0; p < side * side; ++p) {
            const int64_t band = (p / side) * 10 / side;
            const double noise = double(rng() >> 11) * 0x1p-53 - 0.5;
            d.images[size_t(i * side * side + p)] = float(noise + (band == label ? 1.0 : 0.0));
        }
    }
    return d;
}

// Largest |a - b| divided by max(1, largest |b|): the relative tolerance the parity tests use.
// The images of `d` as one {N, C, H, W} tensor.
inline Tensor as_batch(const Dataset& d) {
    Tensor t({d.count, d.channels, d.height, d.width});
    t.data = d.images;
    return t;
}

inline double relative_max_diff(const float* a, const Tensor& b) {
    double diff = 0.0, scale = 1.0;
    for (int64_t i = 0; i < b.numel(); ++i) {
        diff = std::max(diff, std::abs(static_cast<double>(a[i]) - b.data[i]));
        scale = std::max(scale, std::abs(static_cast<double>(b.data[i])));
    }
    return diff / scale;
}

struct ConvSpec {
    Dims2 kernel{3, 3};
    Dims2 stride{1, 1};
    Dims2 pad_begin{1, 1};
    Dims2 pad_end{1, 1};
    Dims2 dilation{1, 1};
    int64_t groups = 1;
    bool bias = true;
};

// A 1x1 conv, unpadded.
inline ConvSpec pointwise() {
    ConvSpec s;
    s.kernel = {1, 1};
    s.pad_begin = s.pad_end = {0, 0};
    return s;
}

struct PoolSpec {
    Dims2 kernel{2, 2};
    Dims2 stride{2, 2};
    Dims2 pad_begin{0, 0};
    Dims2 pad_end{0, 0};
};

// Appends nodes to a graph one at a time; each method returns the new node's output value.
class GraphBuilder {
public:
    explicit GraphBuilder(std::vector<int64_t> input_shape, uint64_t seed = 1) : rng_(seed) {
        graph_.input = "input";
        graph_.input_shape = std::move(input_shape);
        graph_.shapes[graph_.input] = graph_.input_shape;
    }

    const std::string& input() const { return graph_.input; }
    const std::vector<int64_t>& shape(const std::string& value) const { return graph_.shapes.at(value); }
    Rng& rng() { return rng_; }

    std::string conv(const std::string& in, int64_t out_channels, const ConvSpec& spec = {}) {
        Node n = start(Op::conv, {in});
        n.kernel = spec.kernel;
        n.stride = spec.stride;
        n.pad_begin = spec.pad_begin;
        n.pad_end = spec.pad_end;
        n.dilation = spec.dilation;
        n.groups = spec.groups;
        const int64_t in_per_group = shape(in)[0] / spec.groups;
        const int64_t fan_in = in_per_group * spec.kernel[0] * spec.kernel[1];
        n.weight = scaled({out_channels, in_per_group, spec.kernel[0], spec.kernel[1]}, fan_in);
        if (spec.bias) n.bias = random_tensor({out_channels}, rng_, -0.2f, 0.2f);
        return add_node(std::move(n));
    }

    std::string fully_connected(const std::string& in, int64_t out_features, bool bias = true) {
        Node n = start(Op::fully_connected, {in});
        const int64_t in_features = shape(in)[0];
        n.weight = scaled({out_features, in_features}, in_features);
        if (bias) n.bias = random_tensor({out_features}, rng_, -0.2f, 0.2f);
        return add_node(std::move(n));
    }

    std::string batch_norm(const std::string& in) {
        Node n = start(Op::batch_norm, {in});
        const int64_t c = shape(in)[0];
        n.weight = random_tensor({c}, rng_, 0.5f, 1.5f);
        n.bias = random_tensor({c}, rng_, -0.3f, 0.3f);
        n.mean = random_tensor({c}, rng_, -0.3f, 0.3f);
        n.var = random_tensor({c}, rng_, 0.5f, 2.0f);
        n.epsilon = 1e-5f;
        return add_node(std::move(n));
    }

    std::string relu(const std::string& in) { return add_node(start(Op::relu, {in})); }

    std::string clip(const std::string& in, float lo, float hi) {
        Node n = start(Op::clip, {in});
        n.clip_min = lo;
        n.clip_max = hi;
        return add_node(std::move(n));
    }

    std::string max_pool(const std::string& in, const PoolSpec& spec = {}) {
        return add_node(pool(Op::max_pool, in, spec));
    }

    std::string average_pool(const std::string& in, const PoolSpec& spec = {},
                             bool count_include_pad = false) {
        Node n = pool(Op::average_pool, in, spec);
        n.count_include_pad = count_include_pad;
        return add_node(std::move(n));
    }

    std::string global_average_pool(const std::string& in) {
        return add_node(start(Op::global_average_pool, {in}));
    }

    std::string add(const std::string& a, const std::string& b) {
        return add_node(start(Op::add, {a, b}));
    }

    std::string flatten(const std::string& in) { return add_node(start(Op::flatten, {in})); }

    std::string concat(std::vector<std::string> values) {
        return add_node(start(Op::concat, std::move(values)));
    }

    std::string sigmoid(const std::string& in) { return add_node(start(Op::sigmoid, {in})); }

    std::string hard_sigmoid(const std::string& in, float alpha = 0.2f, float beta = 0.5f) {
        Node n = start(Op::hard_sigmoid, {in});
        n.alpha = alpha;
        n.beta = beta;
        return add_node(std::move(n));
    }

    std::string hard_swish(const std::string& in) { return add_node(start(Op::hard_swish, {in})); }

    std::string mul(const std::string& a, const std::string& b) {
        return add_node(start(Op::mul, {a, b}));
    }

    std::string channel_shuffle(const std::string& in, int64_t groups) {
        Node n = start(Op::channel_shuffle, {in});
        n.groups = groups;
        return add_node(std::move(n));
    }

    std::string channel_slice(const std::string& in, int64_t begin, int64_t end) {
        Node n = start(Op::channel_slice, {in});
        n.channel_begin = begin;
        n.channel_end = end;
        return add_node(std::move(n));
    }

    // The finished graph with `output` as its logits; shapes inferred.
    Graph finish(const std::string& output) {
        Graph g = graph_;
        g.output = output;
        infer_shapes(g);
        return g;
    }

private:
    Node start(Op op, std::vector<std::string> inputs) {
        Node n;
        n.op = op;
        n.name = std::string(op_name(op)) + std::to_string(graph_.nodes.size());
        n.inputs = std::move(inputs);
        n.output = n.name + "_out";
        return n;
    }

    Node pool(Op op, const std::string& in, const PoolSpec& spec) {
        Node n = start(op, {in});
        n.kernel = spec.kernel;
        n.stride = spec.stride;
        n.pad_begin = spec.pad_begin;
        n.pad_end = spec.pad_end;
        return n;
    }

    Tensor scaled(std::vector<int64_t> dims, int64_t fan_in) {
        const float a = std::sqrt(3.0f / static_cast<float>(std::max<int64_t>(1, fan_in)));
        return random_tensor(std::move(dims), rng_, -a, a);
    }

    std::string add_node(Node n) {
        std::string out = n.output;
        graph_.nodes.push_back(std::move(n));
        graph_.output = out;
        infer_shapes(graph_); // keeps shape() current and rejects a bad node right away
        return out;
    }

    Graph graph_;
    Rng rng_;
};

// A ResNet-8-like network: conv-bn-relu stem, `blocks` basic blocks (the second and third stages
// downsample with a strided 1x1 projection shortcut), global average pool, fully connected.
inline Graph resnet_like(std::vector<int64_t> input_shape, std::vector<int64_t> widths,
                         int64_t classes = 10, uint64_t seed = 7) {
    GraphBuilder b(std::move(input_shape), seed);
    ConvSpec plain3x3;
    plain3x3.bias = false;
    std::string x = b.relu(b.batch_norm(b.conv(b.input(), widths[0], plain3x3)));
    int64_t channels = widths[0];
    for (size_t stage = 0; stage < widths.size(); ++stage) {
        const int64_t width = widths[stage];
        ConvSpec first = plain3x3;
        if (stage > 0) first.stride = {2, 2};
        std::string y = b.relu(b.batch_norm(b.conv(x, width, first)));
        y = b.batch_norm(b.conv(y, width, plain3x3));
        std::string shortcut = x;
        if (stage > 0 || channels != width) {
            ConvSpec projection;
            projection.kernel = {1, 1};
            projection.pad_begin = projection.pad_end = {0, 0};
            projection.stride = first.stride;
            projection.bias = false;
            shortcut = b.batch_norm(b.conv(x, width, projection));
        }
        x = b.relu(b.add(y, shortcut));
        channels = width;
    }
    x = b.flatten(b.global_average_pool(x));
    return b.finish(b.fully_connected(x, classes));
}

// `graph` with its BatchNorms folded into the convs: the form the evaluator, the costs and the
// wire format take (Evaluator's contract).
inline Graph folded(Graph graph) {
    fold_batch_norm(graph);
    return graph;
}

// A VGG-like network: stages of (conv3x3-relu) x convs_per_stage then 2x2 max pool, then
// flatten, a hidden fully connected layer with ReLU and the classifier.
inline Graph vgg_like(std::vector<int64_t> input_shape, std::vector<int64_t> widths,
                      int64_t convs_per_stage = 2, int64_t hidden = 128, int64_t classes = 10,
                      uint64_t seed = 11) {
    GraphBuilder b(std::move(input_shape), seed);
    std::string x = b.input();
    for (int64_t width : widths) {
        for (int64_t i = 0; i < convs_per_stage; ++i) x = b.relu(b.conv(x, width));
        x = b.max_pool(x);
    }
    x = b.relu(b.fully_connected(b.flatten(x), hidden));
    return b.finish(b.fully_connected(x, classes));
}

} // namespace mps::test
