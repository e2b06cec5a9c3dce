// The wire format between the ranks of a distributed search (search/candidate_scorer.h): a
// candidate reads back as the same policy in 9 + layers + kernels bytes, a score bit for bit
// (infinite SQNR included) with the costs the evaluator gives, and a message that does not fit
// the model is an error, not a wrong policy.
#include "search/candidate_scorer.h"

#include "evaluator/base/error.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <cstring>
#include <limits>

using namespace mps;

namespace {

Graph small_graph() { return test::folded(test::resnet_like({1, 12, 12}, {4, 8}, 10, 3)); }

// Every kind of bit-width: pruned, low, 8, 16 and float weights; float activations.
BitPolicy mixed_policy(const Graph& graph) {
    BitPolicy policy = BitPolicy::uniform(graph, 4, 8);
    const int choices[] = {0, 2, 3, 8, 16, 32};
    int k = 0;
    for (LayerBits& layer : policy.layers) {
        layer.activation_bits = (k % 3 == 0) ? float_bits : 4 + k % 5;
        for (int& bits : layer.weight_bits) bits = choices[k++ % 6];
    }
    return policy;
}

bool same_bits(double a, double b) { return std::memcmp(&a, &b, sizeof a) == 0; }

} // namespace

TEST_CASE("a candidate message reads back as the same policy, one byte per bit-width") {
    const Graph graph = small_graph();
    const BitPolicy policy = mixed_policy(graph);
    policy.validate(graph);
    const Bytes bytes = encode_candidate({41, Split::test, policy});
    size_t kernels = 0;
    for (const LayerBits& layer : policy.layers) kernels += layer.weight_bits.size();
    CHECK(bytes.size() == 9 + policy.layers.size() + kernels);

    const CandidateMessage back = decode_candidate(bytes, graph);
    CHECK(back.index == 41);
    CHECK(back.split == Split::test);
    CHECK(back.policy == policy);
}

TEST_CASE("a candidate message that does not fit the model is refused") {
    const Graph graph = small_graph();
    Bytes bytes = encode_candidate({0, Split::validation, mixed_policy(graph)});
    Bytes longer = bytes;
    longer.push_back(8);
    CHECK_THROWS_AS(decode_candidate(longer, graph), Failure);
    bytes.pop_back();
    CHECK_THROWS_AS(decode_candidate(bytes, graph), Failure);
}

TEST_CASE("a score message carries every field bit for bit and the costs are recomputed") {
    const Graph graph = small_graph();
    const std::vector<BitPolicy> candidates{BitPolicy::uniform(graph, 8, 8), mixed_policy(graph)};
    Score s;
    s.accuracy_percent = 100.0 / 3.0;
    s.mean_loss = 0.1 + 0.2;
    s.mean_kl = 1e-300;
    s.logit_sqnr_db = std::numeric_limits<double>::infinity();
    s.correct = 1234567890123;
    s.images = 9876543210;
    s.split = Split::test;
    s.path = ExecutionPath::fake;
    s.seconds = 2.0 / 7.0;
    const Bytes bytes = encode_score({1, s});
    CHECK(bytes.size() == 66);

    const ScoreMessage back = decode_score(bytes, graph, candidates);
    CHECK(back.index == 1);
    CHECK(same_bits(back.score.accuracy_percent, s.accuracy_percent));
    CHECK(same_bits(back.score.mean_loss, s.mean_loss));
    CHECK(same_bits(back.score.mean_kl, s.mean_kl));
    CHECK(same_bits(back.score.logit_sqnr_db, s.logit_sqnr_db));
    CHECK(same_bits(back.score.seconds, s.seconds));
    CHECK(back.score.correct == s.correct);
    CHECK(back.score.images == s.images);
    CHECK(back.score.split == Split::test);
    CHECK(back.score.path == ExecutionPath::fake);
    const Costs costs = compute_costs(graph, candidates[1]);
    CHECK(back.score.costs.bitops == costs.bitops);
    CHECK(back.score.costs.weight_bits == costs.weight_bits);
    CHECK(back.score.costs.peak_activation_bits == costs.peak_activation_bits);

    CHECK_THROWS_AS(decode_score(encode_score({2, s}), graph, candidates), Failure);
    CHECK_THROWS_AS(decode_score(Bytes(bytes.begin(), bytes.end() - 1), graph, candidates), Failure);
}
