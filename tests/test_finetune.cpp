// Quantization-aware fine-tuning (evaluator/train/finetune.h): straight-through gradients through the
// fake-quantized activations and quantized weights against a naive computation and against the
// float network at the quantized point, the QAT forward against the QuantizedNetwork fake path,
// fine-tuning lowering the loss, and a 32-bit policy being plain training bit for bit.
#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/train/finetune.h"
#include "evaluator/train/train_network.h"
#include "evaluator/train/trainer.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <memory>
#include <random>

namespace {

using namespace mps;

std::shared_ptr<const WeightQuantizer> uniform_quantizer() {
    return make_weight_quantizer("uniform");
}

// Largest |a - b| over max(1e-3, largest |b|).
double relative_error(const std::vector<double>& a, const std::vector<double>& b) {
    REQUIRE(a.size() == b.size());
    double worst = 0, scale = 1e-3;
    for (size_t i = 0; i < a.size(); ++i) {
        worst = std::max(worst, std::abs(a[i] - b[i]));
        scale = std::max(scale, std::abs(b[i]));
    }
    return worst / scale;
}

std::vector<double> as_double(const float* p, int64_t n) { return {p, p + n}; }
std::vector<double> as_double(const Tensor& t) { return {t.data.begin(), t.data.end()}; }

// Signed or unsigned fake quantization of one value and whether its gradient passes, straight
// from docs/semantics.md, "Activations" (independent of activation_range.cpp).
struct Quantized {
    double value;
    bool passes;
};
Quantized spec_quantize(float x, float range, int bits, bool is_signed) {
    const float qmax = is_signed ? float((1 << (bits - 1)) - 1) : float((1 << bits) - 1);
    const float qmin = is_signed ? -qmax : 0.0f;
    const float s = range / qmax;
    const float code = x / s;
    return {s * std::clamp(std::nearbyint(code), qmin, qmax), code >= qmin && code <= qmax};
}

Graph small_cnn(uint64_t seed) {
    test::GraphBuilder b({1, 10, 10}, seed);
    test::ConvSpec spec;
    std::string x = b.max_pool(b.relu(b.conv(b.input(), 8, spec)));
    x = b.relu(b.conv(x, 8, spec));
    return b.finish(b.fully_connected(b.flatten(x), 10));
}

// Mean cross-entropy of a QAT network over the first full batches of `data`.
double mean_loss(QatNetwork& net, const Dataset& data) {
    const int64_t batch = net.batch(), classes = net.num_classes();
    std::vector<float> diff(size_t(batch * classes));
    double sum = 0;
    int64_t batches = 0;
    for (int64_t first = 0; first + batch <= data.count; first += batch, ++batches) {
        net.forward(data.image(first));
        sum += softmax_cross_entropy(net.output(), data.labels.data() + first, batch, classes,
                                     diff.data());
    }
    return sum / double(batches);
}

} // namespace

TEST_CASE("finetune: STE gradients through fake-quantized activations and weights match a naive "
          "computation, clip masks included") {
    // input [8] -> fc1 (6 kernels, kernel 2 pruned) -> relu -> fc2 (4 kernels) -> logits.
    test::GraphBuilder b({8}, 3);
    const std::string h = b.relu(b.fully_connected(b.input(), 6));
    const Graph g = b.finish(b.fully_connected(h, 4));
    const Node &fc1 = g.nodes[0], &fc2 = g.nodes[2];
    BitPolicy policy = BitPolicy::per_layer(g, {{4, 4}, {3, 3}});
    policy.layers[0].weight_bits[2] = 0;
    policy.layers[0].weight_bits[4] = 32;
    // Ranges small enough that the quantizers clip part of the values.
    const std::vector<ActivationQuantizer> activations{{fc1.name, 4, 0.8f, true, nullptr},
                                                       {fc2.name, 3, 0.5f, false, nullptr}};
    const int64_t N = 5, I = 8, H = 6, O = 4;
    test::Rng rng(9);
    const Tensor x = test::random_tensor({N, I}, rng, -1.5f, 1.5f);
    const Tensor r = test::random_tensor({N, O}, rng); // L = sum(logits * r)

    QatNetwork net(g, policy, uniform_quantizer(), activations, N, true);
    net.forward(x.data.data());
    const std::vector<double> logits = as_double(net.output(), N * O);
    net.backward(r.data.data());

    // The naive computation in double on the quantized weights and activations.
    const Tensor w1 = quantize_weights(*uniform_quantizer(), fc1.weight, policy.layers[0].weight_bits);
    const Tensor w2 = quantize_weights(*uniform_quantizer(), fc2.weight, policy.layers[1].weight_bits);
    std::vector<double> xq(N * I), pass0(N * I), pre(N * H), rq(N * H), pass1(N * H), y(N * O);
    for (int64_t i = 0; i < N * I; ++i) {
        const Quantized q = spec_quantize(x.data[i], 0.8f, 4, true);
        xq[i] = q.value;
        pass0[i] = q.passes;
    }
    for (int64_t n = 0; n < N; ++n)
        for (int64_t j = 0; j < H; ++j) {
            double s = fc1.bias.data[j];
            for (int64_t i = 0; i < I; ++i) s += double(w1.data[j * I + i]) * xq[n * I + i];
            pre[n * H + j] = s;
            // The fc2 input is relu(pre) in float32, then quantized.
            const Quantized q = spec_quantize(std::max(0.0f, float(s)), 0.5f, 3, false);
            rq[n * H + j] = q.value;
            pass1[n * H + j] = q.passes;
        }
    for (int64_t n = 0; n < N; ++n)
        for (int64_t o = 0; o < O; ++o) {
            double s = fc2.bias.data[o];
            for (int64_t j = 0; j < H; ++j) s += double(w2.data[o * H + j]) * rq[n * H + j];
            y[n * O + o] = s;
        }
    std::vector<double> dw2(O * H, 0), db2(O, 0), dw1(H * I, 0), db1(H, 0), dx(N * I, 0);
    for (int64_t n = 0; n < N; ++n) {
        std::vector<double> dh(H, 0);
        for (int64_t o = 0; o < O; ++o) {
            const double dy = r.data[n * O + o];
            db2[o] += dy;
            for (int64_t j = 0; j < H; ++j) {
                dw2[o * H + j] += dy * rq[n * H + j];
                dh[j] += dy * w2.data[o * H + j];
            }
        }
        for (int64_t j = 0; j < H; ++j) {
            const double d = dh[j] * pass1[n * H + j] * (pre[n * H + j] > 0 ? 1.0 : 0.0);
            db1[j] += d;
            for (int64_t i = 0; i < I; ++i) {
                dw1[j * I + i] += j == 2 ? 0.0 : d * xq[n * I + i]; // kernel 2 is pruned
                dx[n * I + i] += d * w1.data[j * I + i] * pass0[n * I + i];
            }
        }
    }
    // Both clip masks really clip something and pass something, so the check can fail.
    CHECK(std::count(pass0.begin(), pass0.end(), 0.0) > 0);
    CHECK(std::count(pass0.begin(), pass0.end(), 1.0) > 0);
    CHECK(std::count(pass1.begin(), pass1.end(), 0.0) > 0);
    CHECK(std::count(pass1.begin(), pass1.end(), 1.0) > 0);

    CHECK(relative_error(logits, y) < 1e-5);
    CHECK(relative_error(as_double(net.gradient(fc2.name, &Node::weight)), dw2) < 1e-5);
    CHECK(relative_error(as_double(net.gradient(fc2.name, &Node::bias)), db2) < 1e-5);
    CHECK(relative_error(as_double(net.gradient(fc1.name, &Node::weight)), dw1) < 1e-5);
    CHECK(relative_error(as_double(net.gradient(fc1.name, &Node::bias)), db1) < 1e-5);
    CHECK(relative_error(as_double(net.input_gradient(), N * I), dx) < 1e-5);
    const Tensor pruned = net.gradient(fc1.name, &Node::weight);
    for (int64_t i = 0; i < I; ++i) CHECK(pruned.data[2 * I + i] == 0.0f);
}

TEST_CASE("finetune: the STE gradient is the float network's gradient at the quantized point") {
    // conv -> relu -> max pool -> conv -> relu -> flatten -> fc, only the image input quantized:
    // the float network fed q(x) with quantized weights has the same weight gradients, and the
    // input gradient equals its input gradient where the clip mask passes, 0 elsewhere.
    const Graph g = small_cnn(5);
    const BitPolicy policy = BitPolicy::per_layer(g, {{4, 4}, {3, 32}, {2, 32}});
    const int64_t N = 3;
    const Dataset images = test::random_images(g.input_shape, N, 17);
    float max_abs = 0;
    for (float v : images.images) max_abs = std::max(max_abs, std::abs(v));
    const float range = 0.6f * max_abs; // clips the largest inputs
    const std::vector<ActivationQuantizer> activations{{g.nodes[0].name, 4, range, true, nullptr}};
    test::Rng rng(4);
    const Tensor r = test::random_tensor({N, 10}, rng);

    QatNetwork qat(g, policy, uniform_quantizer(), activations, N, true);
    qat.forward(images.images.data());
    qat.backward(r.data.data());

    Graph at_quantized = g;
    for (size_t l = 0; l < policy.layers.size(); ++l) {
        Node& node = *std::find_if(at_quantized.nodes.begin(), at_quantized.nodes.end(),
                                   [&](const Node& n) { return n.name == policy.layers[l].name; });
        node.weight = quantize_weights(*uniform_quantizer(), node.weight, policy.layers[l].weight_bits);
    }
    std::vector<float> xq = images.images;
    fake_quantize_activation(xq.data(), int64_t(xq.size()), range, 4, true);
    TrainNetwork reference(at_quantized, N, NetworkMode::training, true);
    reference.forward(xq.data());
    CHECK(relative_error(as_double(qat.output(), N * 10), as_double(reference.output(), N * 10)) <
          1e-6);
    reference.backward(r.data.data());
    for (const TrainParameter& p : reference.parameters()) {
        CAPTURE(p.node);
        CHECK(relative_error(as_double(qat.gradient(p.node, p.field)),
                             as_double(reference.gradient(p.node, p.field))) < 1e-6);
    }
    std::vector<double> expected = as_double(reference.input_gradient(), int64_t(xq.size()));
    int clipped = 0;
    for (size_t i = 0; i < expected.size(); ++i)
        if (std::abs(images.images[i] / (range / 7.0f)) > 7.0f) expected[i] = 0, ++clipped;
    CHECK(clipped > 0);
    CHECK(relative_error(as_double(qat.input_gradient(), int64_t(xq.size())), expected) < 1e-6);
}

TEST_CASE("finetune: the QAT forward equals the QuantizedNetwork fake path") {
    // A residual network (values read by a quantized conv and by a float add) and a VGG-like one,
    // under kernel-wise policies with pruned, low-bit, 16- and 32-bit kernels and mixed
    // activation bit-widths (signed 1-bit included).
    std::vector<Graph> graphs{test::resnet_like({3, 12, 12}, {8, 16}),
                              test::vgg_like({1, 12, 12}, {8, 16}, 2, 32)};
    for (Graph& g : graphs) {
        fold_batch_norm(g);
        const Dataset images = test::random_images(g.input_shape, 10, 31);
        const auto calibration = std::make_shared<const Calibration>(
            calibrate(g, test::random_images(g.input_shape, 24, 32), CalibrationMethod{}));
        const std::vector<int> weight_choices{4, 0, 2, 8, 16, 32, 3, 1};
        const std::vector<int> activation_choices{1, 4, 8, 2, 32, 6, 16};
        BitPolicy policy = BitPolicy::uniform(g, 4, 4);
        for (size_t l = 0; l < policy.layers.size(); ++l) {
            policy.layers[l].activation_bits = activation_choices[l % activation_choices.size()];
            for (size_t k = 0; k < policy.layers[l].weight_bits.size(); ++k)
                policy.layers[l].weight_bits[k] = weight_choices[(k + l) % weight_choices.size()];
        }
        CAPTURE(policy.to_string());
        QuantizedNetwork fake(g, calibration,
                              std::make_shared<WeightCache>(g, make_weight_quantizer("uniform")),
                              ExecutionPath::fake, images.count);
        fake.set_policy(policy);
        const float* expected = fake.run(images.images.data(), images.count);
        QatNetwork qat(g, policy, uniform_quantizer(),
                       activation_quantizers(g, policy, *calibration), images.count);
        qat.forward(images.images.data());
        const int64_t n = images.count * qat.num_classes();
        CHECK(relative_error(as_double(qat.output(), n), as_double(expected, n)) < 1e-4);
    }
}

TEST_CASE("finetune: new activation ranges take effect as if the network had been built with them") {
    Graph g = test::resnet_like({3, 12, 12}, {8, 16});
    fold_batch_norm(g);
    const Dataset images = test::random_images(g.input_shape, 10, 41);
    const BitPolicy policy = BitPolicy::uniform(g, 4, 4);
    const Calibration wide = calibrate(g, test::random_images(g.input_shape, 24, 42, -4.0f, 4.0f),
                                       CalibrationMethod{});
    const Calibration narrow = calibrate(g, test::random_images(g.input_shape, 24, 43, -0.5f, 0.5f),
                                         CalibrationMethod{});
    QatNetwork rebuilt(g, policy, uniform_quantizer(), activation_quantizers(g, policy, narrow),
                       images.count);
    rebuilt.forward(images.images.data());
    const int64_t n = images.count * rebuilt.num_classes();
    const std::vector<double> want = as_double(rebuilt.output(), n);

    QatNetwork changed(g, policy, uniform_quantizer(), activation_quantizers(g, policy, wide),
                       images.count);
    changed.forward(images.images.data());
    CHECK(relative_error(as_double(changed.output(), n), want) > 1e-3); // the ranges matter
    changed.set_activation_ranges(activation_quantizers(g, policy, narrow));
    changed.forward(images.images.data());
    CHECK(as_double(changed.output(), n) == want);
    // A layer the network has no quantizer for (at those bits) is refused.
    std::vector<ActivationQuantizer> other = activation_quantizers(g, policy, narrow);
    other.front().bits = 6;
    CHECK_THROWS_AS(changed.set_activation_ranges(other), Error);
}

TEST_CASE("finetune: a few epochs lower the quantized loss; pruned kernels keep their weights") {
    const Graph start = small_cnn(8);
    FinetuneData data;
    data.train = test::banded_images(256, 10, 1);
    data.calibration = data.train.slice(0, 64);
    data.validation = test::banded_images(128, 10, 2);
    BitPolicy policy = BitPolicy::uniform(start, 4, 4);
    policy.layers[1].weight_bits[3] = 0;
    const auto quantizer = uniform_quantizer();
    auto loss_of = [&](const Graph& g) {
        const Calibration c = calibrate(g, data.calibration, CalibrationMethod{});
        QatNetwork net(g, policy, quantizer, activation_quantizers(g, policy, c), 32);
        return mean_loss(net, data.train);
    };
    for (const char* optimizer : {"adam", "sgd"}) {
        CAPTURE(optimizer);
        Graph g = start;
        FinetuneOptions o;
        o.epochs = 4;
        o.batch = 32;
        o.optimizer = optimizer;
        o.lr = std::string(optimizer) == "adam" ? 3e-3 : 0.03;
        o.weight_decay = 1e-3; // must not move the pruned kernel either
        o.distill_weight = 0; // the labels' loss is what is checked
        std::vector<FinetuneEpoch> reports;
        o.on_epoch = [&](const FinetuneEpoch& e) { reports.push_back(e); };
        const FinetuneResult result = finetune(g, policy, data, o);
        REQUIRE(reports.size() == 4);
        CHECK(result.epochs.size() == 4);
        CHECK(reports[3].train_loss < reports[0].train_loss);
        const double before = loss_of(start), after = loss_of(g);
        CHECK(after < 0.8 * before);
        CHECK(result.final_validation_accuracy > 30.0);
        CHECK(result.seconds > 0);
        const Tensor &w0 = start.nodes[3].weight, &w1 = g.nodes[3].weight;
        REQUIRE(start.nodes[3].name == policy.layers[1].name);
        const int64_t size = w0.numel() / w0.dims[0];
        for (int64_t i = 0; i < size; ++i) CHECK(w1.data[3 * size + i] == w0.data[3 * size + i]);
        CHECK(w1.data[0] != w0.data[0]);
    }
}

TEST_CASE("finetune: distillation pulls the quantized network towards the float teacher") {
    FinetuneData data;
    data.train = test::banded_images(256, 10, 7);
    data.calibration = data.train.slice(0, 64);
    data.validation = test::banded_images(64, 10, 8);
    // A teacher that has learned the task, so that 2-bit quantization moves its outputs.
    Graph start = small_cnn(21);
    TrainOptions t;
    t.epochs = 4;
    t.batch = 32;
    t.lr = 3e-3;
    t.warmup_epochs = 0;
    t.augment = false;
    train(start, data.train, data.validation, t);
    const BitPolicy policy = BitPolicy::uniform(start, 2, 2);
    InferenceEngine teacher(start, 32);
    // Mean KL(teacher || student) over the train set, under the ranges the evaluator would use.
    auto divergence = [&](const Graph& g) {
        const Calibration c = calibrate(g, data.calibration, CalibrationMethod{});
        QatNetwork net(g, policy, uniform_quantizer(), activation_quantizers(g, policy, c), 32);
        std::vector<float> diff(32 * 10);
        double sum = 0;
        for (int64_t first = 0; first < data.train.count; first += 32) {
            net.forward(data.train.image(first));
            sum += distillation_loss(net.output(), teacher.run(data.train.image(first), 32),
                                     data.train.labels.data() + first, 32, 10, 1.0, 1.0,
                                     diff.data());
        }
        return sum / double(data.train.count / 32);
    };
    auto tuned = [&](double weight) {
        Graph g = start;
        FinetuneOptions o;
        o.epochs = 3;
        o.batch = 32;
        o.lr = 3e-3;
        o.distill_weight = weight;
        o.distill_temperature = 2.0;
        finetune(g, policy, data, o);
        return g;
    };
    const Graph distilled = tuned(1.0), plain = tuned(0.0);
    const double before = divergence(start), after = divergence(distilled);
    CAPTURE(before);
    CAPTURE(after);
    CAPTURE(divergence(plain));
    CHECK(after < 0.5 * before);
    CHECK(after < 0.5 * divergence(plain));
    CHECK(distilled.nodes[0].weight.data != plain.nodes[0].weight.data);
}

TEST_CASE("finetune: a 32-bit policy is plain training, bit for bit") {
    const Graph start = small_cnn(12);
    FinetuneData data;
    data.train = test::banded_images(96, 10, 5);
    data.calibration = data.train.slice(0, 16);
    data.validation = test::banded_images(32, 10, 6);
    for (const char* optimizer : {"sgd", "adam"}) {
        CAPTURE(optimizer);
        Graph tuned = start;
        FinetuneOptions f;
        f.epochs = 2;
        f.batch = 16;
        f.optimizer = optimizer;
        f.lr = 0.01;
        f.weight_decay = 1e-3;
        f.seed = 3;
        f.distill_weight = 0; // train() knows no teacher
        finetune(tuned, BitPolicy::uniform(start, 32, 32), data, f);

        Graph trained = start;
        TrainOptions t;
        t.epochs = f.epochs;
        t.batch = f.batch;
        t.optimizer = f.optimizer;
        t.lr = f.lr;
        t.weight_decay = f.weight_decay;
        t.seed = f.seed;
        t.warmup_epochs = 0;
        t.augment = false;
        train(trained, data.train, data.validation, t);
        for (size_t n = 0; n < start.nodes.size(); ++n) {
            CAPTURE(start.nodes[n].name);
            CHECK(tuned.nodes[n].weight.data == trained.nodes[n].weight.data);
            CHECK(tuned.nodes[n].bias.data == trained.nodes[n].bias.data);
        }
        CHECK(tuned.nodes[0].weight.data != start.nodes[0].weight.data);
    }
}

TEST_CASE("finetune: bad input is an error that says what to fix") {
    Graph g = small_cnn(2);
    FinetuneData data;
    data.train = test::banded_images(32, 10, 1);
    data.calibration = data.train;
    data.validation = data.train;
    const BitPolicy policy = BitPolicy::uniform(g, 4, 4);
    FinetuneOptions o;
    o.batch = 8;
    o.epochs = 0;
    CHECK_THROWS_WITH_AS(finetune(g, policy, data, o), doctest::Contains("epochs"), Error);
    o.epochs = 1;
    o.optimizer = "rmsprop";
    CHECK_THROWS_WITH_AS(finetune(g, policy, data, o), doctest::Contains("sgd or adam"), Error);
    o.optimizer = "adam";
    o.weight_quantizer = {"nonsense", {}};
    CHECK_THROWS_AS(finetune(g, policy, data, o), Error);
    o.weight_quantizer = {"uniform", {}};
    o.distill_weight = 1.5;
    CHECK_THROWS_WITH_AS(finetune(g, policy, data, o), doctest::Contains("between 0 and 1"), Error);
    o.distill_weight = 1.0;
    o.distill_temperature = 0.0;
    CHECK_THROWS_WITH_AS(finetune(g, policy, data, o), doctest::Contains("temperature"), Error);
    o.distill_weight = 0.0;
    o.distill_temperature = 1.0;
    // A policy of another graph.
    CHECK_THROWS_AS(finetune(g, BitPolicy::uniform(test::resnet_like({1, 10, 10}, {4}), 4, 4),
                             data, o),
                    Error);
    Graph with_bn = test::resnet_like({1, 10, 10}, {4});
    CHECK_THROWS_WITH_AS(finetune(with_bn, BitPolicy::uniform(with_bn, 4, 4), data, o),
                         doctest::Contains("fold batch norm first"), Error);
    // The training engine refuses activation quantizers that do not fit the graph.
    CHECK_THROWS_WITH_AS(TrainNetwork(g, 2, NetworkMode::training, {{"relu1", 4, 1.0f, false, nullptr}}),
                         doctest::Contains("not a conv or fully connected"), Error);
    CHECK_THROWS_WITH_AS(TrainNetwork(g, 2, NetworkMode::training, {{g.nodes[0].name, 9, 1.0f, true, nullptr}}),
                         doctest::Contains("out of range"), Error);
}
