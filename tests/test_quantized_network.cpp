// QuantizedNetwork: the fake-quant path against the naive quantized reference, the integer path
// against the fake path, capture/resume, policy validation and the path decisions.
#include "evaluator/engine/quantized_network.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/code_chains.h"
#include "evaluator/engine/int8_isa.h"
#include "evaluator/ref/quantized_reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

using namespace mps;
using mps::test::ConvSpec;
using mps::test::GraphBuilder;
using mps::test::PoolSpec;

namespace {

Tensor as_batch(const Dataset& d) {
    Tensor t({d.count, d.channels, d.height, d.width});
    t.data = d.images;
    return t;
}

// Convs of every kind (groups, depthwise, stride, asymmetric padding, no bias), ReLU, Clip,
// max and average pooling, a residual add, global average pooling, two fully connected layers.
Graph mixed_graph() {
    GraphBuilder b({3, 12, 12}, 5);
    ConvSpec stem;
    std::string x = b.relu(b.conv(b.input(), 16, stem));
    ConvSpec grouped;
    grouped.groups = 4;
    grouped.bias = false;
    std::string y = b.conv(x, 16, grouped);
    x = b.relu(b.add(y, x));
    ConvSpec depthwise;
    depthwise.groups = 16;
    depthwise.stride = {2, 2};
    depthwise.pad_begin = {0, 1};
    x = b.clip(b.conv(x, 16, depthwise), 0.0f, 6.0f);
    x = b.max_pool(x, PoolSpec{{2, 2}, {1, 1}, {0, 0}, {1, 1}});
    ConvSpec pointwise;
    pointwise.kernel = {1, 1};
    pointwise.pad_begin = pointwise.pad_end = {0, 0};
    std::string raw = b.conv(x, 24, pointwise); // signed input of the next conv
    x = b.relu(b.conv(raw, 24, stem));
    x = b.average_pool(x, PoolSpec{{3, 3}, {2, 2}, {1, 1}, {1, 1}});
    x = b.flatten(b.global_average_pool(x));
    x = b.relu(b.fully_connected(x, 20));
    return b.finish(b.fully_connected(x, 10));
}

Graph folded(Graph g) {
    fold_batch_norm(g);
    return g;
}

struct Setup {
    Graph graph;
    Dataset images;
    std::shared_ptr<const Calibration> calibration;

    Setup(Graph g, int64_t count, uint64_t seed = 21) : graph(folded(std::move(g))) {
        images = test::random_images(graph.input_shape, count, seed);
        calibration = std::make_shared<const Calibration>(
            calibrate(graph, test::random_images(graph.input_shape, 40, seed + 1), CalibrationMethod{}));
    }
    std::shared_ptr<WeightCache> cache(const std::string& quantizer = "uniform") const {
        return std::make_shared<WeightCache>(graph, make_weight_quantizer(quantizer));
    }
};

// A random kernel-wise policy: weight bits from `weight_choices` per kernel, activation bits from
// `activation_choices` per layer.
BitPolicy random_policy(const Graph& graph, uint64_t seed, const std::vector<int>& weight_choices,
                        const std::vector<int>& activation_choices) {
    test::Rng rng(seed);
    auto pick = [&](const std::vector<int>& from) {
        const auto i = static_cast<size_t>(rng.uniform(0.0f, static_cast<float>(from.size())));
        return from[std::min(i, from.size() - 1)];
    };
    BitPolicy policy = BitPolicy::uniform(graph, 8, 8);
    for (LayerBits& layer : policy.layers) {
        layer.activation_bits = pick(activation_choices);
        for (int& b : layer.weight_bits) b = pick(weight_choices);
    }
    return policy;
}

double max_relative_diff(const float* a, const Tensor& b) { return test::relative_max_diff(a, b); }

int argmax(const float* row, int64_t classes) {
    return static_cast<int>(std::max_element(row, row + classes) - row);
}

// Fraction of images whose top-1 class agrees between two logits buffers.
double top1_agreement(const float* a, const float* b, int64_t n, int64_t classes) {
    int64_t same = 0;
    for (int64_t i = 0; i < n; ++i)
        same += argmax(a + i * classes, classes) == argmax(b + i * classes, classes);
    return static_cast<double>(same) / static_cast<double>(n);
}

const std::vector<int> all_weight_bits{0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32};
const std::vector<int> all_activation_bits{1, 2, 3, 4, 6, 8, 16, 32};
const std::vector<int> integer_weight_bits{0, 1, 2, 3, 4, 5, 6, 7, 8};
const std::vector<int> integer_activation_bits{1, 2, 3, 4, 5, 6, 7, 8};

} // namespace

TEST_CASE("execution path names round-trip and reject unknown names") {
    CHECK(parse_execution_path("int") == ExecutionPath::integer);
    CHECK(parse_execution_path("ref") == ExecutionPath::reference);
    CHECK(std::string(execution_path_name(ExecutionPath::reference)) == "ref");
    CHECK(parse_execution_path("fake") == ExecutionPath::fake);
    CHECK(std::string(execution_path_name(ExecutionPath::integer)) == "int");
    CHECK(std::string(execution_path_name(ExecutionPath::fake)) == "fake");
    CHECK_THROWS_AS(parse_execution_path("int8"), Error);
}

TEST_CASE("fake path matches the naive quantized reference") {
    // The engine sums in float32 in its own order, the reference in double; a value landing
    // within float rounding of a quantization step boundary may round the other way, so the
    // figures are not exactly equal, but they agree to float precision on these seeds.
    const std::pair<const char*, Graph> graphs[] = {
        {"mixed", mixed_graph()},
        {"resnet", test::resnet_like({3, 10, 10}, {8, 16})},
        {"vgg", test::vgg_like({1, 12, 12}, {8, 16}, 2, 32)},
    };
    for (const auto& [name, graph] : graphs) {
        const Setup setup(graph, 6);
        const Tensor input = as_batch(setup.images);
        for (const std::string quantizer : {"uniform", "ls", "kmeans"}) {
            auto cache = setup.cache(quantizer);
            QuantizedNetwork net(setup.graph, setup.calibration, cache, ExecutionPath::fake, 8);
            std::vector<BitPolicy> policies{BitPolicy::uniform(setup.graph, 8, 8),
                                            BitPolicy::uniform(setup.graph, 4, 4),
                                            BitPolicy::uniform(setup.graph, 32, 32)};
            for (uint64_t seed = 1; seed <= 3; ++seed)
                policies.push_back(random_policy(setup.graph, seed, all_weight_bits,
                                                 all_activation_bits));
            for (const BitPolicy& policy : policies) {
                CAPTURE(name);
                CAPTURE(quantizer);
                CAPTURE(policy.to_string());
                net.set_policy(policy);
                const Tensor want = reference_quantized_forward(setup.graph, input, policy,
                                                                cache->quantizer(),
                                                                *setup.calibration);
                CHECK(max_relative_diff(net.run(input.data.data(), input.dims[0]), want) < 1e-4);
            }
        }
    }
}

TEST_CASE("integer path agrees with the fake path and the reference") {
    const std::pair<const char*, Graph> graphs[] = {
        {"mixed", mixed_graph()},
        {"resnet", test::resnet_like({1, 12, 12}, {16, 32})},
        {"vgg", test::vgg_like({1, 12, 12}, {8, 16}, 2, 32)},
    };
    // every quantizer with an integer form: uniform, and mse's clipped scales
    for (const std::string quantizer : {"uniform", "mse"})
    for (const auto& [name, graph] : graphs) {
        CAPTURE(quantizer);
        const Setup setup(graph, 32);
        const Tensor input = as_batch(setup.images);
        auto cache = setup.cache(quantizer);
        QuantizedNetwork fake(setup.graph, setup.calibration, cache, ExecutionPath::fake, 32);
        QuantizedNetwork integer(setup.graph, setup.calibration, cache, ExecutionPath::integer, 32);
        std::vector<BitPolicy> policies{BitPolicy::uniform(setup.graph, 8, 8),
                                        BitPolicy::uniform(setup.graph, 4, 4),
                                        BitPolicy::uniform(setup.graph, 2, 8)};
        for (uint64_t seed = 1; seed <= 3; ++seed) {
            policies.push_back(
                random_policy(setup.graph, seed, integer_weight_bits, integer_activation_bits));
            policies.push_back(
                random_policy(setup.graph, seed + 10, all_weight_bits, all_activation_bits));
        }
        for (const BitPolicy& policy : policies) {
            CAPTURE(name);
            CAPTURE(policy.to_string());
            fake.set_policy(policy);
            integer.set_policy(policy);
            const int64_t n = input.dims[0], classes = fake.num_classes();
            const std::vector<float> from_fake(fake.run(input.data.data(), n),
                                               fake.run(input.data.data(), n) + n * classes);
            const float* from_int = integer.run(input.data.data(), n);
            const Tensor want = reference_quantized_forward(setup.graph, input, policy,
                                                            cache->quantizer(), *setup.calibration);
            // Exact in int32, one float rounding per output: a few code flips at most.
            CHECK(top1_agreement(from_int, from_fake.data(), n, classes) >= 0.95);
            CHECK(max_relative_diff(from_int, want) < 0.1);
            Tensor fake_logits(want.dims);
            fake_logits.data = from_fake;
            CHECK(max_relative_diff(from_int, fake_logits) < 0.1);
        }
    }
}

TEST_CASE("reference path: the plain loops agree with the fake path and the naive network") {
    // The third form of every layer (integer, float, reference): evaluator/ref/'s loops on the
    // fake-quantized input inside the same network; the naive whole-network reference is
    // independent of it (its own quantization of every value).
    const Setup setup(mixed_graph(), 16);
    const Tensor input = as_batch(setup.images);
    auto cache = setup.cache();
    QuantizedNetwork fake(setup.graph, setup.calibration, cache, ExecutionPath::fake, 16);
    QuantizedNetwork reference(setup.graph, setup.calibration, cache, ExecutionPath::reference, 16);
    for (uint64_t seed = 1; seed <= 3; ++seed) {
        const BitPolicy policy =
            random_policy(setup.graph, seed, all_weight_bits, all_activation_bits);
        CAPTURE(policy.to_string());
        fake.set_policy(policy);
        reference.set_policy(policy);
        for (const std::string& line : reference.path_decisions())
            CHECK(line.find(": reference path (plain loops)") != std::string::npos);
        const int64_t n = input.dims[0], classes = fake.num_classes();
        const std::vector<float> from_fake(fake.run(input.data.data(), n),
                                           fake.run(input.data.data(), n) + n * classes);
        const float* from_reference = reference.run(input.data.data(), n);
        const Tensor want = reference_quantized_forward(setup.graph, input, policy,
                                                        cache->quantizer(), *setup.calibration);
        CHECK(top1_agreement(from_reference, from_fake.data(), n, classes) >= 0.9);
        CHECK(max_relative_diff(from_reference, want) < 0.1);
    }
    // At 16 and 32 bits no code flips: the forms agree to float precision.
    const BitPolicy wide = BitPolicy::uniform(setup.graph, 32, 16);
    fake.set_policy(wide);
    reference.set_policy(wide);
    Tensor fake_logits({input.dims[0], fake.num_classes()});
    const float* f = fake.run(input.data.data(), input.dims[0]);
    fake_logits.data.assign(f, f + fake_logits.numel());
    CHECK(max_relative_diff(reference.run(input.data.data(), input.dims[0]), fake_logits) < 1e-4);
}

TEST_CASE("integer path on an 8-bit policy is exact up to float rounding") {
    // High-resolution grid, few elements: no code flips, so the paths agree to float precision.
    const Setup setup(test::vgg_like({1, 8, 8}, {8}, 1, 16), 4);
    const Tensor input = as_batch(setup.images);
    auto cache = setup.cache();
    QuantizedNetwork integer(setup.graph, setup.calibration, cache, ExecutionPath::integer, 4);
    const BitPolicy policy = BitPolicy::uniform(setup.graph, 8, 8);
    integer.set_policy(policy);
    // Below VNNI, 8-bit codes times 8-bit weights could saturate int16 pair sums: float path.
    const bool exact_pairs = int8_isa().exact_pair_sums;
    for (const std::string& line : integer.path_decisions())
        CHECK(line.find(exact_pairs ? "integer path" : "could saturate") != std::string::npos);
    const Tensor want = reference_quantized_forward(setup.graph, input, policy,
                                                    cache->quantizer(), *setup.calibration);
    CHECK(max_relative_diff(integer.run(input.data.data(), 4), want) < 1e-4);
}

// The candidate resumed from a cut before layer l: `first` on the layers before l and on the
// layers the cut also depends on (the consumers of code chains crossing it), `second` elsewhere.
BitPolicy resumed_candidate(const BitPolicy& first, const BitPolicy& second, int l,
                            const std::vector<int>& dependencies) {
    BitPolicy mixed = first;
    for (size_t k = static_cast<size_t>(l); k < first.layers.size(); ++k)
        mixed.layers[k] = second.layers[k];
    for (int m : dependencies) mixed.layers[static_cast<size_t>(m)] = first.layers[static_cast<size_t>(m)];
    return mixed;
}

// The graphs of the code-chain tests: chains through a max pool, into a signed input and from
// one fully connected layer to the next (mixed), conv to conv inside a residual block (resnet),
// through max pools and a flatten (vgg).
std::vector<std::pair<const char*, Graph>> chain_test_graphs() {
    return {{"mixed", mixed_graph()},
            {"resnet", test::resnet_like({1, 10, 10}, {8, 16})},
            {"vgg", test::vgg_like({1, 12, 12}, {8, 16}, 1, 16)}};
}

TEST_CASE("capture and resume reproduce run() bit for bit on both paths") {
    const auto graphs = chain_test_graphs();
    int64_t cuts_with_codes = 0;
    for (const auto& [name, graph] : graphs) {
        const Setup setup(graph, 5);
        const std::vector<std::vector<int>> dependencies = cut_dependencies(setup.graph);
        for (ExecutionPath path : {ExecutionPath::fake, ExecutionPath::integer}) {
            QuantizedNetwork net(setup.graph, setup.calibration, setup.cache(), path, 8);
            // Any bits first, then integer bits only, then uniform W4A4 (so that every code
            // chain starts).
            for (const BitPolicy& first :
                 {random_policy(setup.graph, 3, all_weight_bits, all_activation_bits),
                  random_policy(setup.graph, 3, integer_weight_bits, integer_activation_bits),
                  BitPolicy::uniform(setup.graph, 4, 4)}) {
                const BitPolicy second = random_policy(setup.graph, 4, integer_weight_bits,
                                                       integer_activation_bits);
                const int layers = static_cast<int>(first.layers.size());
                for (int l = 0; l < layers; ++l) {
                    CAPTURE(name);
                    CAPTURE(execution_path_name(path));
                    CAPTURE(l);
                    net.set_policy(first);
                    net.run(setup.images.images.data(), 5);
                    const ActivationCut cut = net.capture(l);
                    CHECK(cut.layer == l);
                    CHECK(cut.images == 5);
                    cuts_with_codes += !cut.codes.empty();
                    if (path == ExecutionPath::fake) CHECK(cut.codes.empty());
                    net.set_policy(resumed_candidate(first, second, l, dependencies[l]));
                    const std::vector<float> full(net.run(setup.images.images.data(), 5),
                                                  net.run(setup.images.images.data(), 5) +
                                                      5 * net.num_classes());
                    net.run(setup.images.images.data(), 3); // clobber the buffers of another size
                    const float* resumed = net.resume(cut);
                    CHECK(std::memcmp(resumed, full.data(), full.size() * sizeof(float)) == 0);
                }
            }
        }
    }
    CHECK(cuts_with_codes > 5); // the code chains were crossed
}

TEST_CASE("fusion (requantization, residual adds) computes what the separate steps would, bit for bit") {
    const auto graphs = chain_test_graphs();
    for (const auto& [name, graph] : graphs) {
        const Setup setup(graph, 7);
        auto cache = setup.cache();
        QuantizedNetwork fused(setup.graph, setup.calibration, cache, ExecutionPath::integer, 8);
        QuantizedNetwork unfused(setup.graph, setup.calibration, cache, ExecutionPath::integer, 8);
        unfused.set_fusion(false);
        for (uint64_t seed = 1; seed <= 6; ++seed) {
            CAPTURE(std::string(name));
            CAPTURE(seed);
            const BitPolicy policy = seed == 1   ? BitPolicy::uniform(setup.graph, 4, 4)
                                     : seed == 2 ? BitPolicy::uniform(setup.graph, 8, 2)
                                                 : random_policy(setup.graph, seed,
                                                                 integer_weight_bits,
                                                                 integer_activation_bits);
            fused.set_policy(policy);
            unfused.set_policy(policy);
            const float* a = fused.run(setup.images.images.data(), 7);
            const float* b = unfused.run(setup.images.images.data(), 7);
            CHECK(std::memcmp(a, b, static_cast<size_t>(7 * fused.num_classes()) * sizeof(float)) == 0);
            int writers = 0, adders = 0;
            for (const std::string& line : fused.path_decisions()) {
                writers += line.find("codes") != std::string::npos;
                adders += line.find(" in its kernel") != std::string::npos;
            }
            for (const std::string& line : unfused.path_decisions()) {
                CHECK(line.find("codes") == std::string::npos);
                CHECK(line.find(" in its kernel") == std::string::npos);
            }
            if (seed <= 2) CHECK(writers > 0);
            // every graph but vgg has a residual add after a conv
            if (seed <= 2 && std::string(name) != "vgg") CHECK(adders > 0);
        }
    }
}

TEST_CASE("the integer path repeats itself exactly, run after run") {
    // resnet_like's shortcut is a strided 1x1 conv: the kernel oneDNN 2.6 picks for it below
    // VNNI races between threads (choose_int8_conv skips it); with it, about one sequence of 20 runs
    // in two changed an image's logits.
    const Setup setup(test::resnet_like({1, 10, 10}, {8, 16}), 7);
    QuantizedNetwork net(setup.graph, setup.calibration, setup.cache(), ExecutionPath::integer, 8);
    for (const BitPolicy& policy :
         {BitPolicy::uniform(setup.graph, 4, 4),
          random_policy(setup.graph, 5, integer_weight_bits, integer_activation_bits)}) {
        net.set_policy(policy);
        const size_t count = static_cast<size_t>(7 * net.num_classes());
        const float* first = net.run(setup.images.images.data(), 7);
        const std::vector<float> want(first, first + count);
        int differing = 0;
        for (int run = 0; run < 40; ++run)
            differing += std::memcmp(net.run(setup.images.images.data(), 7), want.data(),
                                     count * sizeof(float)) != 0;
        CHECK(differing == 0);
    }
}

TEST_CASE("set_policy rejects a policy that does not fit the graph") {
    const Setup setup(mixed_graph(), 2);
    QuantizedNetwork net(setup.graph, setup.calibration, setup.cache(), ExecutionPath::integer, 2);
    CHECK_THROWS_WITH_AS(net.run(setup.images.images.data(), 2), doctest::Contains("set_policy"),
                         Error);
    BitPolicy policy = BitPolicy::uniform(setup.graph, 4, 4);
    BitPolicy wrong_kernels = policy;
    wrong_kernels.layers[1].weight_bits.pop_back();
    CHECK_THROWS_AS(net.set_policy(wrong_kernels), Error);
    BitPolicy missing_layer = policy;
    missing_layer.layers.pop_back();
    CHECK_THROWS_AS(net.set_policy(missing_layer), Error);
    BitPolicy bad_bits = policy;
    bad_bits.layers[0].activation_bits = 9;
    CHECK_THROWS_AS(net.set_policy(bad_bits), Error);
    net.set_policy(policy);
    CHECK_THROWS_AS(net.run(setup.images.images.data(), 3), Error);
    CHECK_THROWS_AS(net.capture(99), Error);
    ActivationCut empty;
    CHECK_THROWS_AS(net.resume(empty), Error);
}

TEST_CASE("path decisions say which layers run in integer and why others fall back") {
    const Setup setup(mixed_graph(), 2);
    BitPolicy policy = BitPolicy::uniform(setup.graph, 4, 4);
    policy.layers[0].weight_bits[3] = 16;
    policy.layers[1].activation_bits = 32;
    QuantizedNetwork integer(setup.graph, setup.calibration, setup.cache(), ExecutionPath::integer,
                             2);
    integer.set_policy(policy);
    const std::vector<std::string> lines = integer.path_decisions();
    REQUIRE(lines.size() == policy.layers.size());
    CHECK(lines[0] == policy.layers[0].name + ": 16-bit weights, float path");
    CHECK(lines[1] == policy.layers[1].name + ": 32-bit input, float path");
    CHECK(lines[2] == policy.layers[2].name + ": integer path (u8 x s8), writes " +
                          policy.layers[3].name + "'s codes");
    // Layer 4 reads the raw pointwise output, a signed input: below avx512_core_vnni oneDNN
    // would halve its weights for an s8 source, so its codes go in shifted, as u8.
    CHECK(lines[4] == policy.layers[4].name +
                          (int8_isa().exact_s8_source
                               ? ": integer path (s8 x s8)"
                               : ": integer path (u8 x s8, signed input shifted by a zero point)"));
    CHECK(lines[0].rfind("conv", 0) == 0);

    QuantizedNetwork kmeans(setup.graph, setup.calibration, setup.cache("kmeans"),
                            ExecutionPath::integer, 2);
    kmeans.set_policy(policy);
    CHECK(kmeans.path_decisions()[2].find("no integer form") != std::string::npos);

    QuantizedNetwork fake(setup.graph, setup.calibration, setup.cache(), ExecutionPath::fake, 2);
    fake.set_policy(policy);
    CHECK(fake.path_decisions()[2] == policy.layers[2].name + ": fake-quant path");
}
