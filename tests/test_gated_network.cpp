// Bayesian Bits training (policies/bayesian_bits/gated_network.h): which gates a set of allowed bit-widths
// leaves to learn, the ActivationHook path of TrainNetwork that runs the gated activation
// quantizers (padded blocked layouts included), the untrained GatedNetwork against a naive
// computation on the affine b-bit grids, and the training behaviour: determinism, the bit
// regularizer lowering BitOPs, pinned layers, fix_gates() and weight training.
#include "evaluator/base/error.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ir/costs.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/residual_quantizer.h"
#include "evaluator/ref/reference.h"
#include "evaluator/train/train_network.h"
#include "policies/bayesian_bits/gated_network.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <random>
#include <vector>

namespace {

using namespace mps;
constexpr GateState on = GateState::open, learn = GateState::learned, off = GateState::closed;

GateStates states_of(std::vector<int> allowed) { return gate_states(allowed); }

// --- The ActivationHook path ---

// Passes values and gradients through unchanged (0 in the layout padding) and records what it
// was given.
class RecordingHook final : public ActivationHook {
public:
    int forward_calls = 0, backward_calls = 0;
    int64_t stored = 0;  // n of the last call
    int64_t logical = 0; // elements `inside` marked in the last forward (n when it was nullptr)

    void forward(const float* x, float* y, int64_t n, const uint8_t* inside) override {
        ++forward_calls;
        stored = n;
        logical = 0;
        for (int64_t i = 0; i < n; ++i) {
            const bool in = !inside || inside[i];
            logical += in;
            y[i] = in ? x[i] : 0.0f;
        }
    }

    void backward(const float*, const float* dy, float* dx, int64_t n,
                  const uint8_t* inside) override {
        ++backward_calls;
        for (int64_t i = 0; i < n; ++i) dx[i] = !inside || inside[i] ? dy[i] : 0.0f;
    }
};

// Largest |a - b| over max(1e-3, largest |b|).
double relative_error(const float* a, const float* b, int64_t n) {
    double worst = 0, scale = 1e-3;
    for (int64_t i = 0; i < n; ++i) {
        worst = std::max(worst, std::abs(double(a[i]) - double(b[i])));
        scale = std::max(scale, std::abs(double(b[i])));
    }
    return worst / scale;
}

// --- The naive Bayesian Bits forward ---

const Node& producer_of(const Graph& g, const std::string& value) {
    for (const Node& n : g.nodes)
        if (n.output == value) return n;
    throw Error("test: no node writes '" + value + "'");
}

// The input's activation range of every quantizable layer by the max rule, computed by the
// naive float forward over `images`: max x for a value a relu (possibly through max pool and
// flatten) makes non-negative, max|x| otherwise. Also says which inputs are unsigned.
struct InputRanges {
    std::map<std::string, float> range; // layer name -> range
    std::map<std::string, bool> is_unsigned;
};

bool made_non_negative(const Graph& g, const std::string& value) {
    if (value == g.input) return false;
    const Node& p = producer_of(g, value);
    if (p.op == Op::relu) return true;
    if (p.op == Op::max_pool || p.op == Op::flatten) return made_non_negative(g, p.inputs[0]);
    return false;
}

Tensor as_batch(const Dataset& d) {
    Tensor t({d.count, d.channels, d.height, d.width});
    t.data = d.images;
    return t;
}

InputRanges max_ranges(const Graph& g, const Dataset& images) {
    InputRanges r;
    std::map<std::string, Tensor> values{{g.input, as_batch(images)}};
    for (const Node& node : g.nodes) {
        std::vector<const Tensor*> in;
        for (const std::string& v : node.inputs) in.push_back(&values.at(v));
        if (is_quantizable(node)) {
            const bool non_negative = made_non_negative(g, node.inputs[0]);
            float m = 0.0f;
            for (float v : in[0]->data) m = std::max(m, non_negative ? v : std::abs(v));
            r.range[node.name] = m;
            r.is_unsigned[node.name] = non_negative;
        }
        values[node.output] = reference_node(node, in);
    }
    return r;
}

// Logits of the network with every quantizable layer's weights quantized per kernel (or per
// layer) on the affine `bits` grid over [-max|w|, max|w|] and its input on the affine `bits` grid
// over [0, range] or [-range, range]; `fragile[i]` says whether image i had a quantizer input
// within 1e-3 of a code's rounding boundary (where the float rounding of another summation order
// could pick the other level) or a top-2 logit margin below 1e-3 of the largest logit (which
// also covers the 16-bit grid, whose steps are finer than the float rounding of the sums).
struct ReferenceRun {
    Tensor logits;
    std::vector<bool> fragile;
    std::vector<int> predicted;
};

ReferenceRun quantized_reference(const Graph& g, const Dataset& images, const InputRanges& ranges,
                                 int bits, bool per_kernel) {
    const int64_t count = images.count;
    ReferenceRun run{{}, std::vector<bool>(size_t(count), false), {}};
    std::map<std::string, Tensor> values{{g.input, as_batch(images)}};
    for (const Node& node : g.nodes) {
        std::vector<const Tensor*> in;
        for (const std::string& v : node.inputs) in.push_back(&values.at(v));
        if (!is_quantizable(node)) {
            values[node.output] = reference_node(node, in);
            continue;
        }
        const float range = ranges.range.at(node.name);
        const ResidualQuantizer aq = ranges.is_unsigned.at(node.name)
                                         ? ResidualQuantizer(0.0f, range)
                                         : ResidualQuantizer::symmetric(range);
        Tensor x = *in[0];
        const int64_t per_image = x.numel() / count;
        for (int64_t i = 0; i < x.numel(); ++i) {
            const float t = std::clamp(x.data[i], aq.x_min(), aq.x_max()) - aq.x_min();
            const double code = double(t) / double(aq.step(bits));
            if (std::abs(code - std::floor(code) - 0.5) < 1e-3)
                run.fragile[size_t(i / per_image)] = true;
            x.data[i] = aq.level(x.data[i], bits);
        }
        Node q = node;
        const int64_t kernels = node.weight.dims[0], size = node.weight.numel() / kernels;
        float layer_max = 0.0f;
        for (float w : node.weight.data) layer_max = std::max(layer_max, std::abs(w));
        for (int64_t k = 0; k < kernels; ++k) {
            float kernel_max = 0.0f;
            for (int64_t i = k * size; i < (k + 1) * size; ++i)
                kernel_max = std::max(kernel_max, std::abs(node.weight.data[i]));
            const ResidualQuantizer wq =
                ResidualQuantizer::symmetric(per_kernel ? kernel_max : layer_max);
            for (int64_t i = k * size; i < (k + 1) * size; ++i)
                q.weight.data[i] = wq.level(node.weight.data[i], bits);
        }
        values[node.output] = reference_node(q, {&x});
    }
    run.logits = values.at(g.output);
    const int64_t classes = run.logits.numel() / count;
    for (int64_t i = 0; i < count; ++i) {
        std::vector<float> z(run.logits.data.begin() + i * classes,
                             run.logits.data.begin() + (i + 1) * classes);
        const auto best = std::max_element(z.begin(), z.end());
        run.predicted.push_back(int(best - z.begin()));
        float scale = 1.0f;
        for (float v : z) scale = std::max(scale, std::abs(v));
        const float top = *best;
        *best = -INFINITY;
        const float second = *std::max_element(z.begin(), z.end());
        if (top - second < 1e-3f * scale) run.fragile[size_t(i)] = true;
    }
    return run;
}

// --- Training helpers ---

std::vector<GatedLayer> gated_layers(const Graph& g, const std::vector<int>& allowed) {
    std::vector<GatedLayer> layers;
    for (const Node* n : quantizable_layers(g)) {
        GatedLayer l;
        l.name = n->name;
        l.weight_gates = gate_states(allowed);
        l.activation_gates = gate_states(allowed);
        layers.push_back(l);
    }
    return layers;
}

Graph small_cnn(uint64_t seed) {
    test::GraphBuilder b({1, 10, 10}, seed);
    std::string x = b.max_pool(b.relu(b.conv(b.input(), 4)));
    x = b.relu(b.conv(x, 8));
    return b.finish(b.fully_connected(b.flatten(x), 10));
}

// `steps` training steps cycling through the full batches of `data`, starting at step `first`.
void train_steps(GatedNetwork& net, const Dataset& data, int first, int steps, double mu,
                 std::vector<GatedStepLoss>* losses = nullptr) {
    const int64_t batch = net.batch(), batches = data.count / batch;
    for (int s = first; s < first + steps; ++s) {
        const int64_t start = (s % batches) * batch;
        const GatedStepLoss l = net.step(data.image(start), data.labels.data() + start, mu);
        if (losses) losses->push_back(l);
    }
}

int64_t bitops(const Graph& g, const BitPolicy& p) { return compute_costs(g, p).bitops; }

struct TrainingSetup {
    Graph graph = small_cnn(21);
    Dataset data = test::banded_images(64, 10, 3);
    Calibration calibration = calibrate(graph, data.slice(0, 32), CalibrationMethod{});
    std::vector<GatedLayer> layers = gated_layers(graph, {8, 4, 2});
    GatedOptions options;

    TrainingSetup() {
        options.batch = 16;
        options.gate_lr = 0.1;
        options.lr = 1e-3;
    }
    std::unique_ptr<GatedNetwork> make() const {
        return std::make_unique<GatedNetwork>(graph, layers, calibration, options);
    }
};

} // namespace

TEST_CASE("gated: gate_states and nearest_allowed_bits") {
    using S = GateStates;
    CHECK(states_of({8, 4, 2}) == S{on, learn, learn, off, off});
    CHECK(states_of({8, 4, 2, 0}) == S{learn, learn, learn, off, off});
    CHECK(states_of({8, 6, 4, 3, 2}) == S{on, learn, learn, off, off});
    CHECK(states_of({4}) == S{on, on, off, off, off});
    CHECK(states_of({16, 8}) == S{on, on, on, learn, off});
    CHECK(states_of({32, 16, 8, 4, 2, 0}) == S{learn, learn, learn, learn, learn});
    CHECK(states_of({3}) == S{on, on, off, off, off}); // 3 bits need the 4-bit level
    CHECK(states_of({4, 0}) == S{learn, on, off, off, off});
    CHECK_THROWS_AS(states_of({0}), Error);
    CHECK_THROWS_AS(states_of({}), Error);

    const std::vector<int> allowed{8, 6, 4, 2};
    CHECK(nearest_allowed_bits(4, allowed) == 4);  // exact
    CHECK(nearest_allowed_bits(8, allowed) == 8);
    CHECK(nearest_allowed_bits(0, allowed) == 2);  // the smallest one above
    CHECK(nearest_allowed_bits(5, allowed) == 6);
    CHECK(nearest_allowed_bits(3, allowed) == 4);
    CHECK(nearest_allowed_bits(16, allowed) == 8); // nothing above: the largest
    CHECK(nearest_allowed_bits(32, allowed) == 8);
    const std::vector<int> with_zero{4, 0};
    CHECK(nearest_allowed_bits(0, with_zero) == 0);
    CHECK(nearest_allowed_bits(2, with_zero) == 4);

    // The run grid's chains: the allowed bit-widths ascending, padded above, gated like above.
    const auto run_states = [](std::vector<int> a) { return gate_states(a, run_levels(a)); };
    CHECK(run_levels(std::vector<int>{8, 6, 4, 3, 2}) == GateLevels{2, 3, 4, 6, 8});
    CHECK(run_states({8, 6, 4, 3, 2}) == S{on, learn, learn, learn, learn});
    CHECK(run_states({8, 6, 4, 3, 2, 0}) == S{learn, learn, learn, learn, learn});
    CHECK(run_levels(std::vector<int>{8, 4, 2}) == GateLevels{2, 4, 8, 16, 32});
    CHECK(run_levels(std::vector<int>{4, 3, 0}) == GateLevels{3, 4, 5, 6, 7});
    CHECK(run_states({4, 3, 0}) == S{learn, learn, off, off, off});
    CHECK_THROWS_AS(run_levels(std::vector<int>{32}), Error);          // nothing above 32
    CHECK_THROWS_AS(run_levels(std::vector<int>{8, 7, 6, 5, 4, 3}), Error); // six levels
    CHECK_THROWS_AS(run_levels(std::vector<int>{0}), Error);
}

TEST_CASE("gated: ActivationHook sees the logical elements of padded layouts; an identity hook "
          "is the unquantized network forward and backward") {
    // conv(3 -> 16) -> relu -> conv(16 -> 5) -> relu -> conv(5 -> 8) -> relu -> flatten -> fc:
    // the 5-channel value the third conv reads is stored blocked (nChw16c with AVX-512), its
    // channels padded; the images and the flattened value are plain.
    test::GraphBuilder b({3, 6, 6}, 5);
    std::string x = b.relu(b.conv(b.input(), 16));
    x = b.relu(b.conv(x, 5));
    x = b.relu(b.conv(x, 8));
    const Graph g = b.finish(b.fully_connected(b.flatten(x), 4));
    const std::vector<const Node*> layers = quantizable_layers(g);
    REQUIRE(layers.size() == 4);
    const int64_t N = 3;
    std::vector<std::shared_ptr<RecordingHook>> hooks;
    std::vector<ActivationQuantizer> quantizers;
    for (const Node* n : layers) {
        hooks.push_back(std::make_shared<RecordingHook>());
        quantizers.push_back({n->name, 8, 0.0f, n == layers[0], hooks.back()});
    }
    const Dataset images = test::random_images(g.input_shape, N, 7);
    test::Rng rng(8);
    const Tensor r = test::random_tensor({N, 4}, rng);

    TrainNetwork hooked(g, N, NetworkMode::training, quantizers); // no input gradient
    TrainNetwork plain(g, N, NetworkMode::training);
    hooked.forward(images.images.data());
    plain.forward(images.images.data());
    for (size_t l = 0; l < layers.size(); ++l) {
        CAPTURE(layers[l]->name);
        CHECK(hooks[l]->forward_calls == 1);
        CHECK(hooks[l]->backward_calls == 0);
        const std::vector<int64_t>& shape = g.shapes.at(layers[l]->inputs[0]);
        CHECK(hooks[l]->logical == N * Tensor::count(shape));
        CHECK(hooks[l]->stored >= hooks[l]->logical);
    }
    // Some value really is stored with padding, so `inside` was exercised.
    CHECK(std::any_of(hooks.begin(), hooks.end(),
                      [](const auto& h) { return h->stored > h->logical; }));
    CHECK(relative_error(hooked.output(), plain.output(), N * 4) < 1e-5);

    hooked.backward(r.data.data());
    plain.backward(r.data.data());
    for (size_t l = 0; l < layers.size(); ++l) {
        CAPTURE(layers[l]->name);
        CHECK(hooks[l]->backward_calls == 1); // the first layer's too, though the images need none
    }
    for (const TrainParameter& p : plain.parameters()) {
        CAPTURE(p.node);
        const Tensor want = plain.gradient(p.node, p.field), got = hooked.gradient(p.node, p.field);
        REQUIRE(got.numel() == want.numel());
        CHECK(relative_error(got.data.data(), want.data.data(), want.numel()) < 1e-5);
    }

    // A second pass calls every hook once more.
    hooked.forward(images.images.data());
    hooked.backward(r.data.data());
    for (const auto& h : hooks) CHECK((h->forward_calls == 2 && h->backward_calls == 2));
}

TEST_CASE("gated: the untrained network is the affine b-bit grid on kernel max and calibrated "
          "activation max, against a naive computation") {
    // conv(3 -> 16) -> relu -> max pool -> conv(16 -> 5) -> relu -> conv(5 -> 8) -> relu ->
    // flatten -> fc(10): the first input is signed (the images), the others unsigned; the
    // 5-channel value is stored padded where oneDNN blocks its channels.
    test::GraphBuilder b({3, 8, 8}, 13);
    std::string x = b.max_pool(b.relu(b.conv(b.input(), 16)));
    x = b.relu(b.conv(x, 5));
    x = b.relu(b.conv(x, 8));
    const Graph g = b.finish(b.fully_connected(b.flatten(x), 10));
    const Dataset calibration_images = test::random_images(g.input_shape, 20, 51);
    const Calibration calibration = calibrate(g, calibration_images, CalibrationMethod{});
    const InputRanges ranges = max_ranges(g, calibration_images);
    const Dataset images = test::random_images(g.input_shape, 128, 52);

    struct Case {
        std::vector<int> allowed;
        int bits; // what the untrained gates give: every learned gate starts open
    };
    for (const Case& c : {Case{{8, 4, 2}, 8}, Case{{4}, 4}, Case{{2}, 2}, Case{{16, 8, 4}, 16}}) {
        for (bool per_kernel : {true, false}) {
            CAPTURE(c.bits);
            CAPTURE(per_kernel);
            GatedOptions options;
            options.batch = 16;
            options.per_kernel = per_kernel;
            GatedNetwork net(g, gated_layers(g, c.allowed), calibration, options);
            CHECK(net.thresholded_policy() == BitPolicy::uniform(g, c.bits, c.bits));

            const ReferenceRun ref = quantized_reference(g, images, ranges, c.bits, per_kernel);
            // The images no float rounding can decide differently, labelled with the reference's
            // prediction: all must be predicted.
            Dataset agreed = images;
            agreed.images.clear();
            agreed.labels.clear();
            for (int64_t i = 0; i < images.count; ++i) {
                if (ref.fragile[size_t(i)]) continue;
                agreed.images.insert(agreed.images.end(), images.image(i),
                                     images.image(i) + images.image_size());
                agreed.labels.push_back(uint8_t(ref.predicted[size_t(i)]));
            }
            agreed.count = int64_t(agreed.labels.size());
            REQUIRE(agreed.count >= 16);
            CHECK(net.accuracy(agreed) == 100.0);

            // Labels that agree with the reference on every third image only.
            Dataset shuffled = agreed;
            int64_t matches = 0;
            for (int64_t i = 0; i < shuffled.count; ++i) {
                uint8_t& label = shuffled.labels[size_t(i)];
                if (i % 3 != 0) label = uint8_t((label + 1 + i % 9) % 10);
                else ++matches;
            }
            CHECK(net.accuracy(shuffled) == doctest::Approx(100.0 * double(matches) /
                                                            double(shuffled.count)));
            // The first `limit` images only.
            CHECK(net.accuracy(shuffled, 3) == doctest::Approx(100.0 / 3.0));
        }
    }
}

TEST_CASE("gated: the layer setups must match the graph") {
    const Graph g = small_cnn(4);
    const Calibration calibration =
        calibrate(g, test::banded_images(8, 10, 1), CalibrationMethod{});
    std::vector<GatedLayer> layers = gated_layers(g, {8, 4, 2});
    layers.pop_back();
    CHECK_THROWS_AS(GatedNetwork(g, layers, calibration, GatedOptions{}), Error);
    layers = gated_layers(g, {8, 4, 2});
    std::swap(layers[0], layers[1]);
    CHECK_THROWS_AS(GatedNetwork(g, layers, calibration, GatedOptions{}), Error);
    GatedOptions no_batch;
    no_batch.batch = 0;
    CHECK_THROWS_AS(GatedNetwork(g, gated_layers(g, {8, 4, 2}), calibration, no_batch), Error);
}

TEST_CASE("gated: training is deterministic and the seed drives the gate samples") {
    TrainingSetup s;
    auto a = s.make(), b = s.make();
    std::vector<GatedStepLoss> la, lb;
    train_steps(*a, s.data, 0, 50, 1.0, &la);
    train_steps(*b, s.data, 0, 50, 1.0, &lb);
    for (size_t i = 0; i < la.size(); ++i) {
        CAPTURE(i);
        CHECK(la[i].cross_entropy == lb[i].cross_entropy);
        CHECK(la[i].regularizer == lb[i].regularizer);
    }
    CHECK(a->thresholded_policy() == b->thresholded_policy());
    CHECK(a->accuracy(s.data) == b->accuracy(s.data));
    CHECK(std::isfinite(la.back().cross_entropy));
    CHECK(la.back().regularizer > 0.0);

    s.options.seed = 2;
    auto c = s.make();
    std::vector<GatedStepLoss> lc;
    train_steps(*c, s.data, 0, 50, 1.0, &lc);
    bool differs = false;
    for (size_t i = 0; i < la.size(); ++i) differs |= la[i].cross_entropy != lc[i].cross_entropy;
    CHECK(differs);
}

TEST_CASE("gated: a large mu lowers BitOPs; pinned layers keep their bits; fix_gates freezes the "
          "gates") {
    TrainingSetup s;
    const BitPolicy start = BitPolicy::uniform(s.graph, 8, 8);
    const int64_t start_bitops = bitops(s.graph, start);

    auto free_net = s.make();
    train_steps(*free_net, s.data, 0, 100, 0.0);
    CHECK(free_net->thresholded_policy() == start); // nothing pushes the gates shut

    auto pushed = s.make();
    train_steps(*pushed, s.data, 0, 100, 100.0);
    const BitPolicy pushed_policy = pushed->thresholded_policy();
    CAPTURE(pushed_policy.to_string());
    CHECK(bitops(s.graph, pushed_policy) < start_bitops);
    for (const LayerBits& l : pushed_policy.layers) { // {8, 4, 2}: z_2 is never learned
        CHECK(l.activation_bits >= 2);
        for (int w : l.weight_bits) CHECK((w == 2 || w == 4 || w == 8));
    }

    // Pinned: the middle layer at W8A8 whatever mu does to the others.
    TrainingSetup pinned_setup;
    pinned_setup.layers[1].learned = false;
    pinned_setup.layers[1].fixed = {8, 8};
    auto pinned = pinned_setup.make();
    train_steps(*pinned, pinned_setup.data, 0, 100, 100.0);
    const BitPolicy pinned_policy = pinned->thresholded_policy();
    CAPTURE(pinned_policy.to_string());
    CHECK(pinned_policy.layers[1] == start.layers[1]);
    CHECK(bitops(s.graph, pinned_policy) < start_bitops); // the learned layers did move
    CHECK(pinned_policy.layers[0] != start.layers[0]);

    // fix_gates: fixed at the start, a large mu changes nothing.
    auto fixed_at_start = s.make();
    fixed_at_start->fix_gates();
    train_steps(*fixed_at_start, s.data, 0, 100, 100.0);
    CHECK(fixed_at_start->thresholded_policy() == start);

    // Fixed midway: frozen at the midway policy, while the same run without fixing moves on.
    const int midway = 30;
    auto fixed_midway = s.make(), moving = s.make();
    train_steps(*fixed_midway, s.data, 0, midway, 100.0);
    train_steps(*moving, s.data, 0, midway, 100.0);
    const BitPolicy at_midway = fixed_midway->thresholded_policy();
    REQUIRE(moving->thresholded_policy() == at_midway);
    fixed_midway->fix_gates();
    CHECK(fixed_midway->thresholded_policy() == at_midway);
    train_steps(*fixed_midway, s.data, midway, 100, 100.0);
    train_steps(*moving, s.data, midway, 100, 100.0);
    CAPTURE(at_midway.to_string());
    CHECK(fixed_midway->thresholded_policy() == at_midway);
    CHECK(bitops(s.graph, moving->thresholded_policy()) < bitops(s.graph, at_midway));
}

TEST_CASE("gated: train_weights trains the master weights and biases; otherwise they stay") {
    for (bool train_weights : {false, true}) {
        CAPTURE(train_weights);
        TrainingSetup s;
        s.options.train_weights = train_weights;
        s.options.weight_lr = 1e-2;
        s.layers[2].learned = false; // pinned layers train their weights too (STE)
        s.layers[2].fixed = {4, 8};
        auto net = s.make();
        train_steps(*net, s.data, 0, 5, 0.01);
        net->accuracy(s.data);
        const Graph& m = net->master();
        REQUIRE(m.nodes.size() == s.graph.nodes.size());
        for (size_t n = 0; n < m.nodes.size(); ++n) {
            if (!is_quantizable(s.graph.nodes[n])) continue;
            CAPTURE(m.nodes[n].name);
            CHECK((m.nodes[n].weight.data != s.graph.nodes[n].weight.data) == train_weights);
            CHECK((m.nodes[n].bias.data != s.graph.nodes[n].bias.data) == train_weights);
        }
    }
}

TEST_CASE("gated: grid `run` is the evaluator's fake-quant network at the thresholded bits; "
          "the bitops regularizer lowers BitOPs too") {
    // mse calibration: each activation bit-width has its own range, and the `uniform` weight
    // quantizer's 2-bit grid has 3 levels where the Bayesian Bits grid has 4, so the two grids
    // give different networks.
    TrainingSetup s;
    CalibrationMethod mse;
    mse.rule = CalibrationRule::mse;
    s.calibration = calibrate(s.graph, s.data.slice(0, 32), mse);
    const auto calibration = std::make_shared<const Calibration>(s.calibration);
    // The evaluator's predictions for `policy` with weight quantizer `quantizer`, as labels.
    const auto labelled = [&](const std::string& quantizer, const BitPolicy& policy) {
        auto cache = std::make_shared<WeightCache>(s.graph, make_weight_quantizer(quantizer));
        QuantizedNetwork evaluator(s.graph, calibration, cache, ExecutionPath::fake, 64);
        evaluator.set_policy(policy);
        Dataset result = test::random_images(s.graph.input_shape, 64, 61);
        const float* logits = evaluator.run(result.images.data(), result.count);
        const int64_t classes = evaluator.num_classes();
        for (int64_t i = 0; i < result.count; ++i)
            result.labels[size_t(i)] = uint8_t(argmax(logits + i * classes, classes));
        return result;
    };

    // The run grid gates the space's own bit-widths: 2, 3, 4, 6, 8.
    const std::vector<int> allowed{8, 6, 4, 3, 2};
    for (GatedLayer& l : s.layers) {
        l.weight_levels = l.activation_levels = run_levels(allowed);
        l.weight_gates = l.activation_gates = gate_states(allowed, l.weight_levels);
    }
    // The nested grid refuses other levels.
    CHECK_THROWS_AS(s.make(), Error);

    for (GateRegularizer regularizer : {GateRegularizer::bits, GateRegularizer::bitops}) {
        CAPTURE(static_cast<int>(regularizer));
        s.options.grid = GateGrid::run;
        s.options.regularizer = regularizer;
        auto net = s.make();
        train_steps(*net, s.data, 0, 60, 100.0); // a large mu: mixed bits, some of them 2
        const BitPolicy policy = net->thresholded_policy();
        CAPTURE(policy.to_string());
        REQUIRE(bitops(s.graph, policy) < bitops(s.graph, BitPolicy::uniform(s.graph, 8, 8)));
        for (const LayerBits& l : policy.layers) {
            CHECK(std::count(allowed.begin(), allowed.end(), l.activation_bits) == 1);
            for (int w : l.weight_bits) CHECK(std::count(allowed.begin(), allowed.end(), w) == 1);
        }
        // Convolution algorithms of the training and inference engines may sum in other orders:
        // allow one image in 64 to fall the other way.
        CHECK(net->accuracy(labelled("uniform", policy)) >= 100.0 * 63 / 64);
        // Another weight grid at the same bits is another network.
        CHECK(net->accuracy(labelled("bayesian_bits", policy)) < 95.0);
    }
}
