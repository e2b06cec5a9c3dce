// Evaluator: bit-identical scores whatever the worker count, with or without the incremental
// cache, in one call or one candidate at a time; scores carry the right costs and counts.
#include "evaluator/engine/evaluator.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/ref/reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>

using namespace mps;

namespace {

Graph tiny_resnet() { return test::folded(test::resnet_like({1, 12, 12}, {4, 8}, 10, 21)); }

// n random images labelled by the float model itself (so accuracies are far from chance and
// quantization visibly changes them).
Dataset labelled_images(const Graph& graph, int64_t n, uint64_t seed) {
    Dataset data = test::random_images(graph.input_shape, n, seed, -1.5f, 2.5f);
    Tensor input({n, data.channels, data.height, data.width});
    input.data = data.images;
    const Tensor logits = reference_forward(graph, input);
    const int64_t classes = logits.numel() / n;
    for (int64_t i = 0; i < n; ++i)
        data.labels[i] = static_cast<uint8_t>(argmax(logits.data.data() + i * classes, classes));
    return data;
}

EvaluationData small_data(const Graph& graph) {
    return {labelled_images(graph, 40, 1), labelled_images(graph, 70, 2),
            labelled_images(graph, 50, 3)};
}

EvaluatorOptions small_options(int workers, ExecutionPath path, int64_t cache_bytes = 0) {
    EvaluatorOptions options;
    options.workers = workers;
    options.path = path;
    options.batch = 16; // 70 images: four full batches and a partial one
    options.incremental_cache_bytes = cache_bytes;
    options.incremental_min_macs_per_byte = 0; // tiny layers: capture every shared prefix
    return options;
}

// A kernel-wise random policy; mostly integer-friendly bits, sometimes 0 (pruned), 16 or 32.
BitPolicy random_policy(const Graph& graph, uint64_t seed) {
    test::Rng rng(seed);
    auto pick = [&](std::initializer_list<int> choices) {
        const auto index = static_cast<size_t>(rng.uniform(0.0f, 0.999f) * choices.size());
        return choices.begin()[index];
    };
    BitPolicy policy = BitPolicy::uniform(graph, 8, 8);
    for (LayerBits& layer : policy.layers) {
        layer.activation_bits = pick({2, 3, 4, 6, 8, 8, 16, 32});
        for (int& b : layer.weight_bits) b = pick({0, 2, 3, 4, 4, 5, 8, 8, 16, 32});
    }
    return policy;
}

void check_identical(const Score& a, const Score& b, const BitPolicy& policy, uint64_t seed) {
    INFO("seed ", seed, ", policy ", policy.to_string());
    CHECK(a.correct == b.correct);
    CHECK(a.accuracy_percent == b.accuracy_percent);
    CHECK(a.mean_loss == b.mean_loss); // bit-identical, not approximately equal
    CHECK(a.mean_kl == b.mean_kl);
    CHECK(a.logit_sqnr_db == b.logit_sqnr_db);
    CHECK(a.images == b.images);
}

// Changes one layer at a time from the last layer backwards, as a greedy search does.
std::vector<BitPolicy> greedy_sequence(const Graph& graph) {
    const BitPolicy base = BitPolicy::uniform(graph, 8, 8);
    std::vector<BitPolicy> sequence{base};
    for (size_t l = base.layers.size(); l-- > 0;) {
        BitPolicy child = base;
        child.layers[l].activation_bits = 4;
        for (int& b : child.layers[l].weight_bits) b = 3;
        sequence.push_back(child);
    }
    return sequence;
}

} // namespace

TEST_CASE("evaluator scores are bit-identical with 1 and 2 workers, on both paths") {
    const Graph graph = tiny_resnet();
    const uint64_t seed = 1234;
    std::vector<BitPolicy> candidates;
    for (uint64_t i = 0; i < 6; ++i) candidates.push_back(random_policy(graph, seed + i));
    for (ExecutionPath path : {ExecutionPath::integer, ExecutionPath::fake}) {
        CAPTURE(execution_path_name(path));
        Evaluator one(graph, "", small_data(graph), small_options(1, path));
        Evaluator two(graph, "", small_data(graph), small_options(2, path));
        const auto a = one.evaluate(candidates, Split::validation);
        const auto b = two.evaluate(candidates, Split::validation);
        REQUIRE(a.size() == candidates.size());
        for (size_t i = 0; i < candidates.size(); ++i) check_identical(a[i], b[i], candidates[i], seed + i);
        // a single candidate is spread over the workers batch by batch: still identical
        for (size_t i = 0; i < 2; ++i)
            check_identical(two.evaluate(candidates[i], Split::validation), a[i], candidates[i], seed + i);
    }
}

// The integer path's logits do not depend on the pass size (integer sums, elementwise float
// post-ops); oneDNN's float32 kernels (the FP32 reference of the KL and SQNR, the fake path,
// 16- and 32-bit layers, W8 x A8 below VNNI: int8_isa.h) may round differently at another pass
// size, so only policies that run every layer on integers on every CPU (at most 7 bits) are
// compared, on their own figures.
TEST_CASE("integer-path scores do not depend on the images per network pass, with or without cuts") {
    const Graph graph = tiny_resnet();
    const uint64_t seed = 4321;
    std::vector<BitPolicy> candidates = greedy_sequence(graph);
    for (uint64_t i = 0; i < 3; ++i) candidates.push_back(random_policy(graph, seed + i));
    for (BitPolicy& policy : candidates)
        for (LayerBits& layer : policy.layers) { // integer bits on every CPU
            layer.activation_bits = std::min(layer.activation_bits, 7);
            for (int& b : layer.weight_bits) b = std::min(b, 7);
        }
    Evaluator whole(graph, "", small_data(graph), small_options(2, ExecutionPath::integer));
    const auto expected = whole.evaluate(candidates, Split::validation); // passes of 16
    for (int64_t pass : {5, 1}) {
        for (int64_t cache : {int64_t{0}, int64_t{64} << 20}) {
            CAPTURE(pass);
            CAPTURE(cache);
            EvaluatorOptions options = small_options(2, ExecutionPath::integer, cache);
            options.pass_images = pass; // 16-image batches as passes of 5, 5, 5, 1 or of 1
            Evaluator passes(graph, "", small_data(graph), options);
            passes.evaluate(candidates.front(), Split::validation); // the base: cuts for the rest
            const auto got = passes.evaluate(candidates, Split::validation);
            for (size_t i = 0; i < candidates.size(); ++i) {
                INFO("candidate ", i, ": ", candidates[i].to_string());
                CHECK(got[i].correct == expected[i].correct);
                CHECK(got[i].mean_loss == expected[i].mean_loss); // bit for bit
                CHECK(got[i].images == expected[i].images);
            }
            if (cache > 0) CHECK(passes.incremental_stats().passes_resumed > 0);
        }
    }
    EvaluatorOptions none = small_options(1, ExecutionPath::integer);
    none.pass_images = 0;
    CHECK_THROWS_WITH_AS(Evaluator(graph, "", small_data(graph), none),
                         doctest::Contains("images per pass must be at least 1"), Error);
}

TEST_CASE("evaluating candidates together equals evaluating them one at a time") {
    const Graph graph = tiny_resnet();
    const uint64_t seed = 77;
    std::vector<BitPolicy> candidates;
    for (uint64_t i = 0; i < 5; ++i) candidates.push_back(random_policy(graph, seed + i));
    Evaluator parallel(graph, "", small_data(graph), small_options(2, ExecutionPath::integer));
    Evaluator sequential(graph, "", small_data(graph), small_options(1, ExecutionPath::integer));
    const auto together = parallel.evaluate(candidates, Split::test);
    for (size_t i = 0; i < candidates.size(); ++i)
        check_identical(together[i], sequential.evaluate(candidates[i], Split::test), candidates[i],
                        seed + i);
}

TEST_CASE("incremental evaluation is bit-identical to full evaluation and resumes batches") {
    const Graph graph = tiny_resnet();
    const std::vector<BitPolicy> sequence = greedy_sequence(graph);
    for (ExecutionPath path : {ExecutionPath::integer, ExecutionPath::fake}) {
        for (int workers : {1, 2}) {
            CAPTURE(execution_path_name(path));
            CAPTURE(workers);
            Evaluator full(graph, "", small_data(graph), small_options(1, path, 0));
            Evaluator incremental(graph, "", small_data(graph),
                                  small_options(workers, path, int64_t{64} << 20));
            // the base first (a previous search step), then its children in one call
            const Score base = incremental.evaluate(sequence.front(), Split::validation);
            const auto children = incremental.evaluate(
                std::span<const BitPolicy>(sequence).subspan(1), Split::validation);
            check_identical(base, full.evaluate(sequence.front(), Split::validation),
                            sequence.front(), 0);
            for (size_t i = 1; i < sequence.size(); ++i)
                check_identical(children[i - 1], full.evaluate(sequence[i], Split::validation),
                                sequence[i], i);
            const IncrementalStats stats = incremental.incremental_stats();
            CHECK(stats.passes_resumed > 0);
            CHECK(stats.layers_skipped > 0);
            CHECK(stats.captures > 0);
            CHECK(full.incremental_stats().passes_resumed == 0);
        }
    }
}

TEST_CASE("incremental cache evicts under a tiny budget and stays exact") {
    const Graph graph = tiny_resnet();
    Evaluator full(graph, "", small_data(graph), small_options(1, ExecutionPath::integer, 0));
    // 600 kB: one round stores the cuts before the last two layers (~244 kB for 70 images: the
    // second stage's values plus the residual input), so the third round evicts the first
    const int64_t budget = 600'000;
    Evaluator tight(graph, "", small_data(graph), small_options(1, ExecutionPath::integer, budget));
    for (int bits : {8, 6, 5, 7}) {
        CAPTURE(bits);
        std::vector<BitPolicy> sequence = greedy_sequence(graph);
        for (BitPolicy& p : sequence)
            for (LayerBits& l : p.layers)
                if (l.activation_bits == 8) {
                    l.activation_bits = bits;
                    for (int& b : l.weight_bits) b = bits;
                }
        const Score base = tight.evaluate(sequence.front(), Split::validation);
        check_identical(base, full.evaluate(sequence.front(), Split::validation), sequence.front(), 0);
        const auto children =
            tight.evaluate(std::span<const BitPolicy>(sequence).subspan(1), Split::validation);
        for (size_t i = 1; i < sequence.size(); ++i)
            check_identical(children[i - 1], full.evaluate(sequence[i], Split::validation),
                            sequence[i], i);
    }
    const IncrementalStats stats = tight.incremental_stats();
    CHECK(stats.passes_resumed > 0);
    CHECK(stats.evictions > 0);
    CHECK(stats.bytes <= budget);
}

// Logits of `policy` on every image of `data`, by a QuantizedNetwork of its own, in the
// evaluator's batches of 16.
static std::vector<float> policy_logits(const Graph& graph, const Evaluator& evaluator,
                                        const BitPolicy& policy, const Dataset& data) {
    const int64_t batch = 16;
    QuantizedNetwork net(graph, std::make_shared<const Calibration>(evaluator.calibration()),
                         std::make_shared<WeightCache>(graph, make_weight_quantizer("uniform")),
                         ExecutionPath::fake, batch);
    net.set_policy(policy);
    std::vector<float> all;
    for (int64_t first = 0; first < data.count; first += batch) {
        const int64_t n = std::min(batch, data.count - first);
        const float* logits = net.run(data.image(first), n);
        all.insert(all.end(), logits, logits + n * net.num_classes());
    }
    return all;
}

TEST_CASE("divergence from FP32 (mean KL, logit SQNR) matches a naive computation") {
    const Graph graph = tiny_resnet();
    const EvaluationData data = small_data(graph);
    Evaluator evaluator(graph, "", small_data(graph), small_options(2, ExecutionPath::fake));
    const BitPolicy fp32 = BitPolicy::uniform(graph, float_bits, float_bits);
    const Score same = evaluator.evaluate(fp32, Split::validation);
    CHECK(same.mean_kl == 0.0);
    CHECK(std::isinf(same.logit_sqnr_db));

    const BitPolicy policy = random_policy(graph, 5);
    const Score score = evaluator.evaluate(policy, Split::validation);
    const std::vector<float> reference = policy_logits(graph, evaluator, fp32, data.validation);
    const std::vector<float> quantized = policy_logits(graph, evaluator, policy, data.validation);
    const int64_t classes = 10;
    double kl = 0.0, signal = 0.0, noise = 0.0;
    for (int64_t i = 0; i < data.validation.count; ++i) {
        const float* r = reference.data() + i * classes;
        const float* q = quantized.data() + i * classes;
        double zr = 0.0, zq = 0.0;
        for (int64_t c = 0; c < classes; ++c) {
            zr += std::exp(static_cast<double>(r[c]));
            zq += std::exp(static_cast<double>(q[c]));
        }
        for (int64_t c = 0; c < classes; ++c) {
            const double p = std::exp(static_cast<double>(r[c])) / zr;
            kl += p * (std::log(p) - (static_cast<double>(q[c]) - std::log(zq)));
            signal += static_cast<double>(r[c]) * r[c];
            noise += (static_cast<double>(q[c]) - r[c]) * (static_cast<double>(q[c]) - r[c]);
        }
    }
    CHECK(score.mean_kl > 0.0);
    CHECK(score.mean_kl == doctest::Approx(kl / static_cast<double>(data.validation.count)).epsilon(1e-6));
    CHECK(score.logit_sqnr_db == doctest::Approx(10.0 * std::log10(signal / noise)).epsilon(1e-6));
}

TEST_CASE("evaluator scores carry costs, counts and the split") {
    const Graph graph = tiny_resnet();
    const EvaluationData data = small_data(graph);
    Evaluator evaluator(graph, "", data, small_options(2, ExecutionPath::fake));
    const BitPolicy policy = random_policy(graph, 5);
    const Score score = evaluator.evaluate(policy, Split::test);
    CHECK(score.images == 50);
    CHECK(score.split == Split::test);
    CHECK(score.path == ExecutionPath::fake);
    CHECK(score.costs.bitops == compute_costs(graph, policy).bitops);
    CHECK(score.costs.weight_bits == compute_costs(graph, policy).weight_bits);
    CHECK(score.accuracy_percent == doctest::Approx(100.0 * score.correct / 50.0));
    // float policy: the float network's labels (its own predictions) are met, up to a near tie
    const Score float_score = evaluator.evaluate(BitPolicy::uniform(graph, 32, 32), Split::test);
    CHECK(float_score.correct >= 49);
    CHECK(evaluator.path_decisions(policy).size() == policy.layers.size());
}

TEST_CASE("evaluator rejects bad candidates and splits with clear messages") {
    const Graph graph = tiny_resnet();
    Evaluator evaluator(graph, "", small_data(graph), small_options(1, ExecutionPath::integer));
    BitPolicy bad = BitPolicy::uniform(graph, 4, 4);
    bad.layers[1].weight_bits.pop_back();
    const std::vector<BitPolicy> candidates{BitPolicy::uniform(graph, 4, 4), bad};
    CHECK_THROWS_WITH_AS(evaluator.evaluate(candidates, Split::validation),
                         doctest::Contains("candidate 1"), Error);
    CHECK_THROWS_WITH_AS(evaluator.evaluate(candidates[0], Split::train),
                         doctest::Contains("cannot score on the train split"), Error);
    EvaluatorOptions zero_workers = small_options(0, ExecutionPath::integer);
    CHECK_THROWS_WITH_AS(Evaluator(graph, "", small_data(graph), zero_workers),
                         doctest::Contains("workers must be at least 1"), Error);
}
