// The trainer: every backward primitive wrapper against central finite differences of the forward,
// every training-mode forward against the naive reference, the loss gradient, the optimizer
// making progress, and bit-identical results for the same seed.
#include "evaluator/base/error.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/io/zoo.h"
#include "evaluator/ref/reference.h"
#include "evaluator/train/train_network.h"
#include "evaluator/train/trainer.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <random>

namespace {

using mps::Graph;
using mps::Node;
using mps::Op;
using mps::Tensor;

double unit(std::mt19937_64& rng) { return static_cast<double>(rng() >> 11) * 0x1p-53; }

Tensor random_tensor(std::vector<int64_t> dims, std::mt19937_64& rng, double lo = -1, double hi = 1) {
    Tensor t(std::move(dims));
    for (float& v : t.data) v = static_cast<float>(lo + (hi - lo) * unit(rng));
    return t;
}

// Values of magnitude in [0.15, 1] with random signs: at least 0.15 away from ReLU's kink.
Tensor away_from_zero(std::vector<int64_t> dims, std::mt19937_64& rng) {
    Tensor t(std::move(dims));
    for (float& v : t.data) v = static_cast<float>((0.15 + 0.85 * unit(rng)) * (rng() & 1 ? 1 : -1));
    return t;
}

// Distinct values 0.05 apart in random order: max pooling has no near-ties.
Tensor distinct_values(std::vector<int64_t> dims, std::mt19937_64& rng) {
    Tensor t(std::move(dims));
    for (size_t i = 0; i < t.data.size(); ++i) t.data[i] = 0.05f * float(i) - 0.025f * float(t.data.size());
    for (size_t i = t.data.size(); i > 1; --i) std::swap(t.data[i - 1], t.data[rng() % i]);
    return t;
}

Node node(const std::string& name, Op op, std::vector<std::string> inputs, std::string output) {
    Node n;
    n.name = name;
    n.op = op;
    n.inputs = std::move(inputs);
    n.output = std::move(output);
    return n;
}

// A graph of the given nodes reading "input" of `shape` and writing "output".
Graph graph_of(std::vector<int64_t> shape, std::vector<Node> nodes) {
    Graph g;
    g.input = "input";
    g.input_shape = std::move(shape);
    g.output = "output";
    g.nodes = std::move(nodes);
    mps::infer_shapes(g);
    return g;
}

Node conv_node(int64_t in_c, int64_t out_c, int64_t k, int64_t stride, int64_t pad, int64_t groups,
               bool bias, std::mt19937_64& rng) {
    Node n = node("conv", Op::conv, {"input"}, "output");
    n.kernel = {k, k};
    n.stride = {stride, stride};
    n.pad_begin = {pad, pad};
    n.pad_end = {pad, pad};
    n.groups = groups;
    n.weight = random_tensor({out_c, in_c / groups, k, k}, rng);
    if (bias) n.bias = random_tensor({out_c}, rng);
    return n;
}

Node bn_node(int64_t c, std::mt19937_64& rng, const std::string& in = "input") {
    Node n = node("bn", Op::batch_norm, {in}, "output");
    n.weight = random_tensor({c}, rng, 0.5, 1.5);
    n.bias = random_tensor({c}, rng);
    n.mean = Tensor({c}, 0.0f);
    n.var = Tensor({c}, 1.0f);
    return n;
}

// Loss L = sum(output * r) in double.
double weighted_sum(const float* out, const Tensor& r) {
    double s = 0;
    for (int64_t i = 0; i < r.numel(); ++i) s += double(out[i]) * r.data[i];
    return s;
}

// Max |analytic - numeric| over max(|numeric|, floor): the relative gradient error.
struct Mismatch {
    double worst = 0;
    double scale = 0;
    void add(double analytic, double numeric) {
        worst = std::max(worst, std::abs(analytic - numeric));
        scale = std::max(scale, std::abs(numeric));
    }
    double relative() const { return worst / std::max(scale, 1e-3); }
};

// Checks the input gradient and every trainable parameter's gradient of L = sum(output * r)
// against central differences with step h (at most `samples` entries of each tensor).
void check_gradients(Graph g, int64_t batch, const Tensor& x, uint64_t seed, double tolerance,
                     float h = 1e-2f, int64_t samples = 48) {
    std::mt19937_64 rng(seed);
    mps::TrainNetwork net(g, batch, mps::NetworkMode::training, true);
    std::vector<int64_t> out_dims = net.output_dims();
    const Tensor r = random_tensor(out_dims, rng);
    net.forward(x.data.data());
    net.backward(r.data.data());
    const std::vector<float> dx(net.input_gradient(), net.input_gradient() + x.numel());

    auto loss_at = [&](const Tensor& input) {
        net.forward(input.data.data());
        return weighted_sum(net.output(), r);
    };
    const int64_t stride_x = std::max<int64_t>(1, x.numel() / samples);
    Mismatch input;
    Tensor probe = x;
    for (int64_t i = 0; i < x.numel(); i += stride_x) {
        const float saved = probe.data[i];
        probe.data[i] = saved + h;
        const double up = loss_at(probe);
        probe.data[i] = saved - h;
        const double down = loss_at(probe);
        probe.data[i] = saved;
        input.add(dx[size_t(i)], (up - down) / (2.0 * h));
    }
    CAPTURE(input.worst);
    CAPTURE(input.scale);
    CHECK(input.relative() < tolerance);

    // Parameter gradients: perturb the graph's tensors and reload them.
    std::vector<std::pair<std::string, Tensor Node::*>> params;
    for (const mps::TrainParameter& p : net.parameters())
        if (p.trainable) params.emplace_back(p.node, p.field);
    for (const auto& [name, field] : params) {
        const Tensor analytic = net.gradient(name, field);
        Node* n = nullptr;
        for (Node& candidate : g.nodes)
            if (candidate.name == name) n = &candidate;
        REQUIRE(n != nullptr);
        Tensor& t = n->*field;
        REQUIRE(analytic.numel() == t.numel());
        Mismatch m;
        const int64_t stride = std::max<int64_t>(1, t.numel() / samples);
        for (int64_t i = 0; i < t.numel(); i += stride) {
            const float saved = t.data[i];
            t.data[i] = saved + h;
            net.load(g);
            const double up = loss_at(x);
            t.data[i] = saved - h;
            net.load(g);
            const double down = loss_at(x);
            t.data[i] = saved;
            m.add(analytic.data[i], (up - down) / (2.0 * h));
        }
        net.load(g);
        CAPTURE(name);
        CAPTURE(m.worst);
        CAPTURE(m.scale);
        CHECK(m.relative() < tolerance);
    }
}

// The network's training-mode forward against reference_node on the same input.
void check_forward(const Graph& g, int64_t batch, const Tensor& x, double tolerance = 1e-4) {
    mps::TrainNetwork net(g, batch, mps::NetworkMode::training);
    net.forward(x.data.data());
    const Tensor expected = mps::reference_node(g.nodes.back(), {&x});
    REQUIRE(expected.numel() == mps::Tensor::count(net.output_dims()));
    double worst = 0, scale = 1e-3;
    for (int64_t i = 0; i < expected.numel(); ++i) {
        worst = std::max(worst, std::abs(double(net.output()[i]) - expected.data[i]));
        scale = std::max(scale, std::abs(double(expected.data[i])));
    }
    CHECK(worst / scale < tolerance);
}

} // namespace

TEST_CASE("trainer: conv gradients match finite differences (stride, pad, groups, depthwise)") {
    std::mt19937_64 rng(1);
    SUBCASE("3x3 pad 1 with bias") {
        const Graph g = graph_of({3, 6, 6}, {conv_node(3, 4, 3, 1, 1, 1, true, rng)});
        const Tensor x = random_tensor({2, 3, 6, 6}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 2, 1e-2);
    }
    SUBCASE("5x5 stride 2 pad 2 without bias") {
        const Graph g = graph_of({2, 7, 7}, {conv_node(2, 5, 5, 2, 2, 1, false, rng)});
        const Tensor x = random_tensor({2, 2, 7, 7}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 3, 1e-2);
    }
    SUBCASE("grouped 1x1") {
        const Graph g = graph_of({4, 5, 5}, {conv_node(4, 6, 1, 1, 0, 2, true, rng)});
        const Tensor x = random_tensor({2, 4, 5, 5}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 4, 1e-2);
    }
    SUBCASE("depthwise 3x3 stride 2 on 16 channels (blocked layout)") {
        const Graph g = graph_of({16, 6, 6}, {conv_node(16, 16, 3, 2, 1, 16, false, rng)});
        const Tensor x = random_tensor({2, 16, 6, 6}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 5, 1e-2);
    }
}

TEST_CASE("trainer: fully connected gradients match finite differences") {
    std::mt19937_64 rng(2);
    Node fc = node("fc", Op::fully_connected, {"flat"}, "output");
    fc.weight = random_tensor({5, 18}, rng);
    fc.bias = random_tensor({5}, rng);
    const Graph g = graph_of({2, 3, 3}, {node("flatten", Op::flatten, {"input"}, "flat"), fc});
    const Tensor x = random_tensor({3, 2, 3, 3}, rng);
    mps::TrainNetwork net(g, 3, mps::NetworkMode::training);
    net.forward(x.data.data());
    Tensor flat = x;
    flat.dims = {3, 18};
    const Tensor expected = mps::reference_fully_connected(flat, g.nodes.back());
    for (int64_t i = 0; i < expected.numel(); ++i)
        CHECK(net.output()[i] == doctest::Approx(expected.data[i]).epsilon(1e-4));
    check_gradients(g, 3, x, 6, 1e-2);
}

TEST_CASE("trainer: batch norm in training mode: batch statistics, running update, gradients") {
    std::mt19937_64 rng(3);
    const Graph g = graph_of({3, 4, 4}, {bn_node(3, rng)});
    const Tensor x = random_tensor({4, 3, 4, 4}, rng, -1.0, 2.0);

    // Reference: inference-mode BN with this batch's mean and biased variance.
    Node with_batch_stats = g.nodes[0];
    const int64_t m = 4 * 16;
    std::vector<double> mean(3, 0.0), var(3, 0.0);
    for (int64_t n = 0; n < 4; ++n)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t i = 0; i < 16; ++i) mean[size_t(c)] += x.data[size_t((n * 3 + c) * 16 + i)] / double(m);
    for (int64_t n = 0; n < 4; ++n)
        for (int64_t c = 0; c < 3; ++c)
            for (int64_t i = 0; i < 16; ++i) {
                const double d = x.data[size_t((n * 3 + c) * 16 + i)] - mean[size_t(c)];
                var[size_t(c)] += d * d / double(m);
            }
    for (size_t c = 0; c < 3; ++c) {
        with_batch_stats.mean.data[c] = float(mean[c]);
        with_batch_stats.var.data[c] = float(var[c]);
    }
    mps::TrainNetwork net(g, 4, mps::NetworkMode::training);
    net.forward(x.data.data());
    const Tensor expected = mps::reference_batch_norm(x, with_batch_stats);
    for (int64_t i = 0; i < expected.numel(); ++i)
        CHECK(net.output()[i] == doctest::Approx(expected.data[i]).epsilon(1e-4).scale(1.0));

    // PyTorch's running update from mean 0, var 1: momentum 0.1, unbiased variance.
    Graph stored = g;
    net.store(stored);
    for (size_t c = 0; c < 3; ++c) {
        CHECK(stored.nodes[0].mean.data[c] == doctest::Approx(0.1 * mean[c]).epsilon(1e-5));
        CHECK(stored.nodes[0].var.data[c] ==
              doctest::Approx(0.9 + 0.1 * var[c] * m / (m - 1)).epsilon(1e-5));
    }
    check_gradients(g, 4, x, 7, 2e-2, 1e-2f);
}

TEST_CASE("trainer: relu and clip gradients (away from the kinks)") {
    std::mt19937_64 rng(4);
    const Graph relu = graph_of({2, 3, 3}, {node("relu", Op::relu, {"input"}, "output")});
    const Tensor x = away_from_zero({2, 2, 3, 3}, rng);
    check_forward(relu, 2, x);
    check_gradients(relu, 2, x, 8, 1e-3);

    Node clip = node("clip", Op::clip, {"input"}, "output");
    clip.clip_min = -0.5f;
    clip.clip_max = 0.5f;
    const Graph g = graph_of({2, 3, 3}, {clip});
    Tensor y = away_from_zero({2, 2, 3, 3}, rng);
    for (float& v : y.data) // keep 0.05 away from +-0.5
        if (std::abs(std::abs(v) - 0.5f) < 0.05f) v = v > 0 ? 0.7f : -0.3f;
    check_forward(g, 2, y);
    check_gradients(g, 2, y, 9, 1e-3);
}

TEST_CASE("trainer: max, average and global average pool gradients") {
    std::mt19937_64 rng(5);
    SUBCASE("max 2x2 stride 2") {
        Node n = node("pool", Op::max_pool, {"input"}, "output");
        n.kernel = {2, 2};
        n.stride = {2, 2};
        const Graph g = graph_of({3, 6, 6}, {n});
        const Tensor x = distinct_values({2, 3, 6, 6}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 10, 1e-3);
    }
    SUBCASE("max 3x3 stride 2 pad 1 (overlapping windows)") {
        Node n = node("pool", Op::max_pool, {"input"}, "output");
        n.kernel = {3, 3};
        n.stride = {2, 2};
        n.pad_begin = {1, 1};
        n.pad_end = {1, 1};
        const Graph g = graph_of({2, 5, 5}, {n});
        const Tensor x = distinct_values({2, 2, 5, 5}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 11, 1e-3);
    }
    SUBCASE("average 3x3 stride 2 pad 1, with and without padding counted") {
        for (bool include : {false, true}) {
            Node n = node("pool", Op::average_pool, {"input"}, "output");
            n.kernel = {3, 3};
            n.stride = {2, 2};
            n.pad_begin = {1, 1};
            n.pad_end = {1, 1};
            n.count_include_pad = include;
            const Graph g = graph_of({3, 5, 5}, {n});
            const Tensor x = random_tensor({2, 3, 5, 5}, rng);
            check_forward(g, 2, x);
            check_gradients(g, 2, x, 12, 1e-3);
        }
    }
    SUBCASE("global average") {
        const Graph g = graph_of({16, 3, 3}, {node("gap", Op::global_average_pool, {"input"}, "output")});
        const Tensor x = random_tensor({2, 16, 3, 3}, rng);
        check_forward(g, 2, x);
        check_gradients(g, 2, x, 13, 1e-3);
    }
}

TEST_CASE("trainer: add fans its gradient out, and values read twice sum their gradients") {
    std::mt19937_64 rng(6);
    // output = conv(x) + x: x receives the conv's data gradient plus the identity gradient.
    Node conv = conv_node(16, 16, 3, 1, 1, 1, false, rng);
    conv.output = "c";
    const Graph residual = graph_of({16, 4, 4}, {conv, node("add", Op::add, {"c", "input"}, "output")});
    const Tensor x = random_tensor({2, 16, 4, 4}, rng);
    check_gradients(residual, 2, x, 14, 1e-2);

    // output = x + x: the gradient is exactly 2 r.
    const Graph twice = graph_of({2, 2, 2}, {node("add", Op::add, {"input", "input"}, "output")});
    const Tensor y = random_tensor({2, 2, 2, 2}, rng);
    mps::TrainNetwork net(twice, 2, mps::NetworkMode::training, true);
    net.forward(y.data.data());
    for (int64_t i = 0; i < y.numel(); ++i) CHECK(net.output()[i] == 2 * y.data[i]);
    const Tensor r = random_tensor({2, 2, 2, 2}, rng);
    net.backward(r.data.data());
    for (int64_t i = 0; i < y.numel(); ++i) CHECK(net.input_gradient()[i] == 2 * r.data[i]);
}

TEST_CASE("trainer: a small conv-BN-ReLU-pool-fc stack has correct gradients end to end") {
    std::mt19937_64 rng(7);
    Node conv = conv_node(1, 16, 3, 1, 1, 1, false, rng);
    conv.output = "c";
    Node bn = bn_node(16, rng, "c");
    bn.output = "b";
    Node fc = node("fc", Op::fully_connected, {"f"}, "output");
    fc.weight = random_tensor({3, 16}, rng);
    fc.bias = random_tensor({3}, rng);
    const Graph g = graph_of({1, 6, 6}, {conv, bn, node("gap", Op::global_average_pool, {"b"}, "p"),
                                         node("flatten", Op::flatten, {"p"}, "f"), fc});
    const Tensor x = random_tensor({4, 1, 6, 6}, rng);
    check_gradients(g, 4, x, 15, 2e-2);
}

TEST_CASE("trainer: batch norm with its ReLU fused computes what batch norm then clip(0, inf) does") {
    // conv -> bn -> relu is compiled into one fused batch norm primitive; clip(0, 1e30) is the
    // same function compiled without fusion, so outputs, running statistics and all gradients
    // must agree.
    std::mt19937_64 rng(8);
    Node conv = conv_node(16, 16, 3, 1, 1, 1, false, rng);
    conv.output = "c";
    Node bn = bn_node(16, rng, "c");
    bn.output = "b";
    Node fc = node("fc", Op::fully_connected, {"f"}, "output");
    fc.weight = random_tensor({3, 16 * 16}, rng);
    fc.bias = random_tensor({3}, rng);
    Node clip = node("act", Op::clip, {"b"}, "a");
    clip.clip_min = 0.0f;
    clip.clip_max = 1e30f;
    const Graph fused = graph_of({16, 4, 4}, {conv, bn, node("act", Op::relu, {"b"}, "a"),
                                              node("flatten", Op::flatten, {"a"}, "f"), fc});
    const Graph plain = graph_of({16, 4, 4}, {conv, bn, clip, node("flatten", Op::flatten, {"a"}, "f"), fc});
    const Tensor x = random_tensor({3, 16, 4, 4}, rng);
    const Tensor r = random_tensor({3, 3}, rng);
    mps::TrainNetwork a(fused, 3, mps::NetworkMode::training, true);
    mps::TrainNetwork b(plain, 3, mps::NetworkMode::training, true);
    for (mps::TrainNetwork* net : {&a, &b}) {
        net->forward(x.data.data());
        net->backward(r.data.data());
    }
    for (int64_t i = 0; i < r.numel(); ++i)
        CHECK(a.output()[i] == doctest::Approx(b.output()[i]).epsilon(1e-5));
    for (int64_t i = 0; i < x.numel(); ++i)
        CHECK(a.input_gradient()[i] == doctest::Approx(b.input_gradient()[i]).epsilon(1e-4).scale(1e-3));
    for (const auto& [name, field] : std::vector<std::pair<std::string, Tensor Node::*>>{
             {"conv", &Node::weight}, {"bn", &Node::weight}, {"bn", &Node::bias}, {"fc", &Node::weight}}) {
        CAPTURE(name);
        const Tensor ga = a.gradient(name, field), gb = b.gradient(name, field);
        for (int64_t i = 0; i < ga.numel(); ++i)
            CHECK(ga.data[i] == doctest::Approx(gb.data[i]).epsilon(1e-4).scale(1e-3));
    }
    Graph sa = fused, sb = plain;
    a.store(sa);
    b.store(sb);
    CHECK(sa.nodes[1].var.data == sb.nodes[1].var.data);
}

TEST_CASE("trainer: softmax cross-entropy and its gradient") {
    const float logits[6] = {1.0f, 2.0f, 3.0f, 0.0f, 0.0f, 0.0f};
    const uint8_t labels[2] = {2, 0};
    float diff[6];
    const double loss = mps::softmax_cross_entropy(logits, labels, 2, 3, diff);
    const double e = std::exp(1.0) + std::exp(2.0) + std::exp(3.0);
    const double expected = 0.5 * ((std::log(e) - 3.0) + std::log(3.0));
    CHECK(loss == doctest::Approx(expected).epsilon(1e-6));
    CHECK(diff[0] == doctest::Approx(0.5 * std::exp(1.0) / e));
    CHECK(diff[2] == doctest::Approx(0.5 * (std::exp(3.0) / e - 1)));
    CHECK(diff[3] == doctest::Approx(0.5 * (1.0 / 3 - 1)));
    // Finite differences of the loss itself.
    for (int k = 0; k < 6; ++k) {
        float p[6], scratch[6];
        std::copy(logits, logits + 6, p);
        p[k] += 1e-3f;
        const double up = mps::softmax_cross_entropy(p, labels, 2, 3, scratch);
        p[k] -= 2e-3f;
        const double down = mps::softmax_cross_entropy(p, labels, 2, 3, scratch);
        CHECK(diff[k] == doctest::Approx((up - down) / 2e-3).epsilon(1e-3).scale(1e-3));
    }
}

TEST_CASE("trainer: distillation loss against a naive reference and finite differences") {
    const float logits[8] = {1.0f, -2.0f, 0.5f, 3.0f, 0.0f, 0.25f, -1.0f, 2.0f};
    const float teacher[8] = {2.0f, -1.0f, 0.0f, 1.0f, -3.0f, 0.5f, 4.0f, 1.0f};
    const uint8_t labels[2] = {3, 2};
    // Naive reference: the definition, in long double with plain softmaxes.
    const auto reference = [&](const float* z, double weight, double t) {
        long double total = 0;
        for (int i = 0; i < 2; ++i) {
            long double zs = 0, ps = 0, qs = 0;
            for (int k = 0; k < 4; ++k) {
                zs += std::exp((long double)z[i * 4 + k]);
                ps += std::exp((long double)z[i * 4 + k] / t);
                qs += std::exp((long double)teacher[i * 4 + k] / t);
            }
            total += (1 - weight) * -std::log(std::exp((long double)z[i * 4 + labels[i]]) / zs);
            for (int k = 0; k < 4; ++k) {
                const long double p = std::exp((long double)z[i * 4 + k] / t) / ps;
                const long double q = std::exp((long double)teacher[i * 4 + k] / t) / qs;
                total += weight * t * t * q * std::log(q / p);
            }
        }
        return double(total / 2);
    };
    for (const auto& [weight, t] : {std::pair{0.0, 1.0}, {0.5, 1.0}, {1.0, 1.0}, {0.7, 4.0}}) {
        CAPTURE(weight);
        CAPTURE(t);
        float diff[8], scratch[8];
        const double loss =
            mps::distillation_loss(logits, teacher, labels, 2, 4, weight, t, diff);
        CHECK(loss == doctest::Approx(reference(logits, weight, t)).epsilon(1e-9));
        for (int k = 0; k < 8; ++k) {
            float z[8];
            std::copy(logits, logits + 8, z);
            z[k] += 1e-3f;
            const double up = mps::distillation_loss(z, teacher, labels, 2, 4, weight, t, scratch);
            z[k] -= 2e-3f;
            const double down = mps::distillation_loss(z, teacher, labels, 2, 4, weight, t, scratch);
            CHECK(diff[k] == doctest::Approx((up - down) / 2e-3).epsilon(1e-3).scale(1e-3));
        }
    }
    // Weight 0 is the plain cross-entropy, bit for bit; a student equal to its teacher has no
    // soft loss and no soft gradient.
    float a[8], b[8];
    CHECK(mps::distillation_loss(logits, teacher, labels, 2, 4, 0.0, 2.0, a) ==
          mps::softmax_cross_entropy(logits, labels, 2, 4, b));
    CHECK(std::equal(a, a + 8, b));
    CHECK(mps::distillation_loss(teacher, teacher, labels, 2, 4, 1.0, 3.0, a) ==
          doctest::Approx(0.0).scale(1e-12));
    for (float d : a) CHECK(d == doctest::Approx(0.0).scale(1e-7));
}

TEST_CASE("trainer: SGD and Adam reduce the loss and learn a learnable task") {
    const mps::Dataset data = mps::test::banded_images(512, 28, 1);
    for (const char* optimizer : {"sgd", "adam"}) {
        CAPTURE(optimizer);
        Graph g = mps::make_architecture("lenet5", 1);
        const double before = mps::evaluate_float(g, data).accuracy_percent;
        mps::TrainOptions o;
        o.epochs = 3;
        o.batch = 32;
        o.optimizer = optimizer;
        o.lr = std::string(optimizer) == "sgd" ? 0.05 : 0.002;
        std::vector<mps::EpochReport> reports;
        o.on_epoch = [&](const mps::EpochReport& r) { reports.push_back(r); };
        mps::train(g, data, data, o);
        REQUIRE(reports.size() == 3);
        CHECK(reports[2].train_loss < reports[0].train_loss);
        CHECK(reports[2].train_loss < 1.0);
        CHECK(reports[2].validation_accuracy > 90.0);
        CHECK(reports[2].validation_accuracy > before + 30.0);
        CHECK(reports[0].images_per_second > 0);
    }
}

TEST_CASE("trainer: the same seed gives bit-identical weights, another seed does not") {
    const mps::Dataset data = mps::test::banded_images(192, 28, 2);
    auto run = [&](uint64_t seed) {
        Graph g = mps::make_architecture("resnet8", 5);
        mps::TrainOptions o;
        o.epochs = 1;
        o.batch = 64;
        o.lr = 0.05;
        o.seed = seed;
        o.augment = true;
        o.validation_limit = 64;
        mps::train(g, data, data, o);
        return g;
    };
    const Graph a = run(3), b = run(3), c = run(4);
    bool any_difference = false;
    for (size_t i = 0; i < a.nodes.size(); ++i) {
        CAPTURE(a.nodes[i].name);
        CHECK(a.nodes[i].weight.data == b.nodes[i].weight.data);
        CHECK(a.nodes[i].bias.data == b.nodes[i].bias.data);
        CHECK(a.nodes[i].mean.data == b.nodes[i].mean.data);
        CHECK(a.nodes[i].var.data == b.nodes[i].var.data);
        any_difference |= a.nodes[i].weight.data != c.nodes[i].weight.data;
    }
    CHECK(any_difference);
    // Training changed the initial weights.
    CHECK(a.find_node("conv1")->weight.data != mps::make_architecture("resnet8", 5).find_node("conv1")->weight.data);
}

TEST_CASE("trainer: bad options are errors that say what to fix") {
    const mps::Dataset data = mps::test::banded_images(16, 28, 3);
    Graph g = mps::make_architecture("lenet5", 1);
    mps::TrainOptions o;
    o.epochs = 1;
    o.batch = 32;
    CHECK_THROWS_WITH_AS(mps::train(g, data, data, o), doctest::Contains("batch 32"), mps::Error);
    o.batch = 8;
    o.optimizer = "rmsprop";
    CHECK_THROWS_WITH_AS(mps::train(g, data, data, o), doctest::Contains("rmsprop"), mps::Error);
    mps::Dataset wrong = data;
    wrong.height = wrong.width = 14;
    o.optimizer = "sgd";
    CHECK_THROWS_AS(mps::train(g, wrong, data, o), mps::Error);
}
