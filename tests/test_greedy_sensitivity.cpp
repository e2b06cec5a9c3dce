// Policy greedy_sensitivity: driven to completion by a synthetic scorer whose metric is a known
// function of the bits (so the expected probes, descent order and refinement can be checked),
// and once by the real Evaluator on a tiny network.
#include "policies/policy.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/evaluator.h"
#include "evaluator/ir/costs.h"
#include "evaluator/quant/quantizer.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <numeric>
#include <span>
#include <string>
#include <tuple>
#include <unordered_set>
#include <vector>

using namespace mps;

namespace {

// The metric a synthetic run scores: lower is better.
using Metric = std::function<double(const BitPolicy&)>;

struct Batch {
    std::string stage;
    std::vector<BitPolicy> candidates;
};

struct Run {
    std::vector<Batch> batches;
    std::vector<Evaluation> scored; // in scoring order

    std::vector<BitPolicy> stage(const std::string& name) const {
        std::vector<BitPolicy> all;
        for (const Batch& b : batches)
            if (b.stage == name) all.insert(all.end(), b.candidates.begin(), b.candidates.end());
        return all;
    }
    std::vector<Batch> batches_of(const std::string& name) const {
        std::vector<Batch> all;
        for (const Batch& b : batches)
            if (b.stage == name) all.push_back(b);
        return all;
    }
};

// Every figure the policy or pick() may read, derived from one metric value.
Score synthetic_score(const Graph& graph, const BitPolicy& policy, double metric) {
    Score s;
    s.mean_kl = metric;
    s.accuracy_percent = 100.0 - metric;
    s.logit_sqnr_db = -10.0 * std::log10(std::max(metric, 1e-30));
    s.images = 1;
    s.costs = compute_costs(graph, policy);
    return s;
}

using Scorer = std::function<std::vector<Score>(const std::vector<BitPolicy>&)>;

Scorer synthetic_scorer(const Graph& graph, const Metric& metric) {
    return [&graph, metric](const std::vector<BitPolicy>& candidates) {
        std::vector<Score> scores;
        for (const BitPolicy& p : candidates)
            scores.push_back(synthetic_score(graph, p, metric(p)));
        return scores;
    };
}

PolicyContext make_context(const Graph& graph, const SearchSpace& space,
                           const std::map<std::string, std::string>& params = {}) {
    const PolicyInfo* info = find_policy("greedy_sensitivity");
    REQUIRE(info != nullptr);
    std::map<std::string, ParamValue> values;
    for (const auto& [name, text] : params)
        for (const ParamSpec& spec : info->params)
            if (spec.name == name) values[name] = parse_param(spec, text);
    REQUIRE(values.size() == params.size());
    PolicyContext context;
    context.graph = &graph;
    context.space = space;
    context.params = ParamValues(values);
    context.reference = synthetic_score(graph, BitPolicy::uniform(graph, 32, 32), 0.0);
    return context;
}

// The run loop: propose, score, observe, until the policy proposes nothing.
Run run_policy(const PolicyContext& context, const Scorer& scorer, int64_t limit = 64) {
    auto policy = make_policy("greedy_sensitivity", context);
    Run run;
    for (int round = 0; round < 10000; ++round) {
        Proposal proposal = policy->propose(limit);
        if (proposal.candidates.empty()) return run;
        REQUIRE(static_cast<int64_t>(proposal.candidates.size()) <= limit);
        const std::vector<Score> scores = scorer(proposal.candidates);
        std::vector<Evaluation> evaluations;
        for (size_t i = 0; i < scores.size(); ++i)
            evaluations.push_back({proposal.candidates[i], scores[i]});
        policy->observe(evaluations);
        run.scored.insert(run.scored.end(), evaluations.begin(), evaluations.end());
        run.batches.push_back({proposal.stage, std::move(proposal.candidates)});
    }
    FAIL("the policy did not finish within 10000 batches");
    return run;
}

// conv(4) pool conv(8) pool fc(16) fc(10) on 1x8x8 inputs: four quantizable layers.
Graph small_graph() { return test::vgg_like({1, 8, 8}, {4, 8}, 1, 16, 10, 5); }

// Sum over layers of sensitivity * (mean over kernels of 2^-b_w + 2^-b_a): additive over
// layers, so phase 1 estimates it exactly.
Metric layer_metric(std::vector<double> sensitivity) {
    return [sensitivity](const BitPolicy& policy) {
        double total = 0.0;
        for (size_t l = 0; l < policy.layers.size(); ++l) {
            const LayerBits& layer = policy.layers[l];
            double weights = 0.0;
            for (int b : layer.weight_bits) weights += std::ldexp(1.0, -b);
            weights /= static_cast<double>(layer.weight_bits.size());
            total += sensitivity[l] * (weights + std::ldexp(1.0, -layer.activation_bits));
        }
        return total;
    };
}

SearchSpace layer_space() {
    SearchSpace space;
    space.granularity = Granularity::layer;
    space.weight_bits = {8, 4, 2};
    space.activation_bits = {8, 4, 2};
    return space;
}

// Indices of the layers whose bits differ.
std::vector<size_t> changed_layers(const BitPolicy& a, const BitPolicy& b) {
    std::vector<size_t> changed;
    for (size_t l = 0; l < a.layers.size(); ++l)
        if (!(a.layers[l] == b.layers[l])) changed.push_back(l);
    return changed;
}

int64_t weight_bit_sum(const LayerBits& layer) {
    return std::accumulate(layer.weight_bits.begin(), layer.weight_bits.end(), int64_t{0});
}

// Every layer at or below its bits in `before` (activation and every kernel).
bool nowhere_higher(const BitPolicy& after, const BitPolicy& before) {
    for (size_t l = 0; l < after.layers.size(); ++l) {
        if (after.layers[l].activation_bits > before.layers[l].activation_bits) return false;
        for (size_t k = 0; k < after.layers[l].weight_bits.size(); ++k)
            if (after.layers[l].weight_bits[k] > before.layers[l].weight_bits[k]) return false;
    }
    return true;
}

std::vector<BitPolicy> all_proposals(const Run& run) {
    std::vector<BitPolicy> all;
    for (const Batch& b : run.batches)
        all.insert(all.end(), b.candidates.begin(), b.candidates.end());
    return all;
}

} // namespace

TEST_CASE("greedy_sensitivity: phase 1 probes every lower candidate of one group at a time") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    const BitPolicy start = space.highest(graph);
    const Metric metric = layer_metric({1.0, 2.0, 0.5, 1.5});
    const size_t groups = quantizable_layers(graph).size();

    const Run grid = run_policy(make_context(graph, space), synthetic_scorer(graph, metric));
    REQUIRE(grid.batches.front().stage == "start");
    CHECK(grid.batches.front().candidates == std::vector<BitPolicy>{start});
    const std::vector<BitPolicy> probes = grid.stage("phase1");
    CHECK(probes.size() == groups * (3 * 3 - 1));
    for (const BitPolicy& p : probes) {
        CHECK(changed_layers(p, start).size() == 1);
        CHECK(space.violation(graph, p) == "");
    }

    const Run separable = run_policy(make_context(graph, space, {{"phase1", "separable"}}),
                                     synthetic_scorer(graph, metric));
    const std::vector<BitPolicy> axis_probes = separable.stage("phase1");
    CHECK(axis_probes.size() == groups * ((3 - 1) + (3 - 1)));
    for (const BitPolicy& p : axis_probes) {
        const auto changed = changed_layers(p, start);
        REQUIRE(changed.size() == 1);
        const LayerBits& layer = p.layers[changed.front()];
        // Only one axis moves: weights at the top or activations at the top.
        CHECK((layer.activation_bits == 8 || layer.weight_bits.front() == 8));
    }
    // The metric is additive per layer and per axis, so the separable estimate is exact and
    // both modes commit the same steps; grid mode reuses more of them from its probes.
    std::vector<BitPolicy> separable_new;
    for (const BitPolicy& p : separable.stage("descent"))
        if (std::find(probes.begin(), probes.end(), p) == probes.end()) separable_new.push_back(p);
    CHECK(separable_new == grid.stage("descent"));
    CHECK(separable.scored.back().policy == space.lowest(graph));
    CHECK(grid.scored.back().policy == space.lowest(graph));
}

TEST_CASE("greedy_sensitivity: phase1 auto probes the grid only when it fits the evaluation budget") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    const Metric metric = layer_metric({1.0, 2.0, 0.5, 1.5});
    const int64_t groups = static_cast<int64_t>(quantizable_layers(graph).size());
    // start + grid probes + the longest descent (each group: 2 weight and 2 activation steps)
    const int64_t grid_run = 1 + groups * (3 * 3 - 1) + groups * 4;
    for (int64_t budget : {grid_run, grid_run - 1, int64_t{0}}) {
        CAPTURE(budget);
        PolicyContext context = make_context(graph, space, {{"phase1", "auto"}});
        context.max_evaluations = budget; // 0: no budget known, grid
        const Run run = run_policy(context, synthetic_scorer(graph, metric));
        const bool grid = budget != grid_run - 1;
        CHECK(static_cast<int64_t>(run.stage("phase1").size()) ==
              groups * (grid ? 3 * 3 - 1 : (3 - 1) + (3 - 1)));
    }
}

TEST_CASE("greedy_sensitivity: with too few evaluations for the whole curve, steps over the budget "
          "are committed unscored") {
    const Graph graph = small_graph();
    SearchSpace space = layer_space();
    space.constraints.max_relative_bitops =
        compute_costs(graph, space.lowest(graph)).relative_bitops() * 1.05; // near the bottom
    const Metric metric = layer_metric({1.0, 2.0, 0.5, 1.5});
    const auto groups = static_cast<int64_t>(quantizable_layers(graph).size());
    const int64_t evaluations = 1 + groups * (3 * 3 - 1) + 4; // start, grid, 4 descent points
    auto feasible_within_budget = [&](const Run& run) {
        for (size_t i = 0; i < std::min(run.scored.size(), static_cast<size_t>(evaluations)); ++i)
            if (meets_cost_constraints(space.constraints, run.scored[i].score.costs)) return true;
        return false;
    };
    const PolicyContext unlimited =
        make_context(graph, space, {{"phase1", "grid"}, {"refine", "false"}});
    const Run every_step = run_policy(unlimited, synthetic_scorer(graph, metric));
    CHECK_FALSE(feasible_within_budget(every_step)); // scoring every step: the budget is too far
    PolicyContext limited = unlimited;
    limited.max_evaluations = evaluations;
    const Run skipping = run_policy(limited, synthetic_scorer(graph, metric));
    CHECK(feasible_within_budget(skipping));
    CHECK(skipping.stage("descent").size() < every_step.stage("descent").size());
    CHECK(skipping.scored.back().policy == space.lowest(graph)); // the descent still ends there
    for (const Evaluation& e : skipping.scored) { // it only leaves points out, adds none
        const bool known = std::any_of(every_step.scored.begin(), every_step.scored.end(),
                                       [&](const Evaluation& f) { return f.policy == e.policy; });
        if (!known) FAIL_CHECK("a point the full descent never scored: " << e.policy.to_string());
    }
}

TEST_CASE("greedy_sensitivity: the descent lowers the least sensitive layer first and ends at "
          "the lowest point") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    const BitPolicy start = space.highest(graph);
    const BitPolicy lowest = space.lowest(graph);
    // Layer 1 is a million times less sensitive than the others: all of its moves come first.
    const Run run = run_policy(make_context(graph, space),
                               synthetic_scorer(graph, layer_metric({1.0, 1e-6, 1.0, 1.0})));
    const std::vector<BitPolicy> steps = run.stage("descent");
    // 4 groups x 4 moves; the 4 moves of layer 1 alone were phase-1 probes, so they are reused.
    REQUIRE(steps.size() == 4 * 4 - 4);
    const auto first = changed_layers(steps.front(), start);
    REQUIRE(first.size() == 2);
    CHECK(steps.front().layers[1] == lowest.layers[1]);
    CHECK((first[0] == 1 || first[1] == 1));
    for (size_t i = 1; i < steps.size(); ++i) {
        INFO("step ", i, ": ", steps[i].to_string());
        CHECK(compute_costs(graph, steps[i]).bitops < compute_costs(graph, steps[i - 1]).bitops);
        CHECK(nowhere_higher(steps[i], steps[i - 1]));
        CHECK(changed_layers(steps[i], steps[i - 1]).size() == 1);
    }
    CHECK(steps.back() == lowest);
    // Layer granularity: no refinement.
    CHECK(run.stage("refine").empty());
}

TEST_CASE("greedy_sensitivity: lookahead scores the top k moves in one batch") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    const Scorer scorer = synthetic_scorer(graph, layer_metric({1.0, 2.0, 0.5, 1.5}));
    for (int64_t limit : {8, 2}) {
        INFO("limit ", limit);
        const Run run = run_policy(make_context(graph, space, {{"lookahead", "3"}}), scorer, limit);
        const auto batches = run.batches_of("descent");
        REQUIRE(!batches.empty());
        const size_t k = std::min<size_t>(3, static_cast<size_t>(limit));
        size_t largest = 0;
        for (const Batch& b : batches) largest = std::max(largest, b.candidates.size());
        CHECK(largest == k);
        // The k candidates of a step start from one committed point: each lowers one group.
        for (const Batch& b : batches)
            for (size_t i = 1; i < b.candidates.size(); ++i)
                CHECK(changed_layers(b.candidates[i], b.candidates[0]).size() <= 2);
        // Whatever is committed along the way, the last step reaches the lowest point.
        const auto last = run.stage("descent");
        bool reached = false;
        for (const BitPolicy& p : last) reached = reached || p == space.lowest(graph);
        CHECK(reached);
    }
}

TEST_CASE("greedy_sensitivity: the sqnr metric takes the lossless start as the best point") {
    const Graph graph = small_graph();
    SearchSpace space = layer_space();
    space.weight_bits = {32, 4, 2};
    space.activation_bits = {32, 4};
    const Metric metric = layer_metric({1.0, 2.0, 0.5, 1.5});
    const BitPolicy start = space.highest(graph);
    // W32A32 reproduces the FP32 logits: +infinity dB.
    const Scorer scorer = [&](const std::vector<BitPolicy>& candidates) {
        std::vector<Score> scores;
        for (const BitPolicy& p : candidates) {
            Score s = synthetic_score(graph, p, metric(p));
            if (p == start) s.logit_sqnr_db = std::numeric_limits<double>::infinity();
            scores.push_back(s);
        }
        return scores;
    };
    const Run run = run_policy(make_context(graph, space, {{"metric", "sqnr"}}), scorer);
    CHECK(run.stage("phase1").size() == 4 * (3 * 2 - 1));
    const std::vector<BitPolicy> steps = run.stage("descent");
    REQUIRE(!steps.empty());
    for (size_t i = 1; i < steps.size(); ++i)
        CHECK(compute_costs(graph, steps[i]).bitops < compute_costs(graph, steps[i - 1]).bitops);
    CHECK(steps.back() == space.lowest(graph));
}

TEST_CASE("greedy_sensitivity: on the weight-bytes axis the descent never lowers activations") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    PolicyContext context = make_context(graph, space);
    context.objective = Objective::weight_bytes;
    const Scorer scorer = synthetic_scorer(graph, layer_metric({1.0, 2.0, 0.5, 1.5}));
    const Run run = run_policy(context, scorer);
    const std::vector<BitPolicy> steps = run.stage("descent");
    REQUIRE(!steps.empty());
    for (const BitPolicy& p : steps)
        for (const LayerBits& layer : p.layers) CHECK(layer.activation_bits == 8);
    for (size_t i = 1; i < steps.size(); ++i)
        CHECK(compute_costs(graph, steps[i]).weight_bits <
              compute_costs(graph, steps[i - 1]).weight_bits);
    // It ends with every layer at the lowest weight bits, activations untouched.
    CHECK(steps.back() == BitPolicy::uniform(graph, 2, 8));
}

TEST_CASE("greedy_sensitivity: network granularity probes the uniform grid and reuses it") {
    const Graph graph = small_graph();
    SearchSpace space = layer_space();
    space.granularity = Granularity::network;
    const Run run = run_policy(make_context(graph, space),
                               synthetic_scorer(graph, layer_metric({1.0, 2.0, 0.5, 1.5})));
    CHECK(run.stage("phase1").size() == 3 * 3 - 1);
    // Every descent step is a uniform policy phase 1 has scored: nothing new to propose.
    CHECK(run.stage("descent").empty());
    CHECK(run.scored.size() == 3 * 3);
}

TEST_CASE("greedy_sensitivity: the same inputs give the same proposals, whatever the limit") {
    const Graph graph = small_graph();
    SearchSpace space = layer_space();
    space.granularity = Granularity::kernel;
    space.allow_pruning = true;
    space.constraints.max_relative_bitops = 0.02;
    const Scorer scorer = synthetic_scorer(graph, layer_metric({1.0, 2.0, 0.5, 1.5}));
    const PolicyContext context = make_context(graph, space);
    const Run a = run_policy(context, scorer, 5);
    const Run b = run_policy(context, scorer, 5);
    REQUIRE(a.batches.size() == b.batches.size());
    for (size_t i = 0; i < a.batches.size(); ++i) {
        CHECK(a.batches[i].stage == b.batches[i].stage);
        CHECK(a.batches[i].candidates == b.batches[i].candidates);
    }
    // With lookahead 1 the limit only splits the same sequence into other batches.
    const Run one = run_policy(context, scorer, 1);
    const Run many = run_policy(context, scorer, 1000);
    CHECK(all_proposals(one) == all_proposals(a));
    CHECK(all_proposals(many) == all_proposals(a));
    std::vector<std::string> stages_one, stages_many;
    for (const Batch& batch : one.batches)
        for (size_t i = 0; i < batch.candidates.size(); ++i) stages_one.push_back(batch.stage);
    for (const Batch& batch : many.batches)
        for (size_t i = 0; i < batch.candidates.size(); ++i) stages_many.push_back(batch.stage);
    CHECK(stages_one == stages_many);
}

namespace {

// Kernel k of every quantizable layer scaled by 1 + 3k: kernels of very different quantization
// error, the situation kernel-wise refinement is for.
Graph graded_graph() {
    Graph graph = small_graph();
    for (Node& node : graph.nodes) {
        if (!is_quantizable(node)) continue;
        const int64_t kernels = kernel_count(node);
        const int64_t size = node.weight.numel() / kernels;
        for (int64_t k = 0; k < kernels; ++k)
            for (int64_t i = 0; i < size; ++i)
                node.weight.data[static_cast<size_t>(k * size + i)] *=
                    1.0f + 3.0f * static_cast<float>(k);
    }
    return graph;
}

// Sum over layers of sensitivity * (relative weight quantization error + 2^-b_a), with the
// error of the uniform quantizer at each kernel's own bits.
class QuantizationErrorMetric {
public:
    QuantizationErrorMetric(const Graph& graph, std::vector<double> sensitivity)
        : layers_(quantizable_layers(graph)), sensitivity_(std::move(sensitivity)),
          quantizer_(make_weight_quantizer("uniform")) {}

    double operator()(const BitPolicy& policy) {
        double total = 0.0;
        for (size_t l = 0; l < layers_.size(); ++l) {
            const Tensor& w = layers_[l]->weight;
            double error = 0.0, norm = 0.0;
            for (size_t k = 0; k < policy.layers[l].weight_bits.size(); ++k)
                error += kernel_error(l, k, policy.layers[l].weight_bits[k]);
            for (float v : w.data) norm += static_cast<double>(v) * v;
            total += sensitivity_[l] *
                     (error / norm + std::ldexp(1.0, -policy.layers[l].activation_bits));
        }
        return total;
    }

private:
    double kernel_error(size_t layer, size_t kernel, int bits) {
        const auto key = std::make_tuple(layer, kernel, bits);
        if (auto it = cache_.find(key); it != cache_.end()) return it->second;
        const Tensor& w = layers_[layer]->weight;
        const size_t size = static_cast<size_t>(w.numel() / kernel_count(*layers_[layer]));
        std::vector<float> q(size);
        const std::span<const float> kernel_weights(w.data.data() + kernel * size, size);
        quantizer_->quantize_kernel(kernel_weights, bits, q);
        double error = 0.0;
        for (size_t i = 0; i < size; ++i) error += std::pow(kernel_weights[i] - q[i], 2.0);
        return cache_[key] = error;
    }

    std::vector<const Node*> layers_;
    std::vector<double> sensitivity_;
    std::unique_ptr<WeightQuantizer> quantizer_;
    std::map<std::tuple<size_t, size_t, int>, double> cache_;
};

SearchSpace kernel_space() {
    SearchSpace space;
    space.granularity = Granularity::kernel;
    space.weight_bits = {8, 6, 4, 3, 2};
    space.activation_bits = {8, 4};
    space.allow_pruning = true;
    space.constraints.max_relative_bitops = 0.02;
    return space;
}

} // namespace

namespace {

// Runs refinement for two rounds under `f` and checks every step of it against the picked point;
// `combination_wins` says which of the combination and the best single move `f` prefers.
void check_refinement(const Graph& graph, const Metric& f, bool combination_wins) {
    const SearchSpace space = kernel_space();
    const PolicyContext context = make_context(graph, space, {{"refine_rounds", "2"}});
    const Run run = run_policy(context, synthetic_scorer(graph, f), 1000);

    // The point refinement starts from: the pick over everything scored before it.
    const std::vector<BitPolicy> refined = run.stage("refine");
    std::vector<Evaluation> before;
    for (const Evaluation& e : run.scored)
        if (std::find(refined.begin(), refined.end(), e.policy) == refined.end())
            before.push_back(e);
    const auto chosen = pick(before, space.constraints, context.objective,
                             context.reference.accuracy_percent);
    REQUIRE(chosen);
    const BitPolicy picked = before[*chosen].policy;
    const Costs picked_costs = compute_costs(graph, picked);

    const auto rounds = run.batches_of("refine");
    REQUIRE(rounds.size() >= 3);
    for (const BitPolicy& p : refined) {
        const Costs costs = compute_costs(graph, p);
        CHECK(meets_cost_constraints(space.constraints, costs));
        CHECK(space.violation(graph, p) == "");
        for (size_t l = 0; l < costs.layers.size(); ++l)
            CHECK(costs.layers[l].bitops <= picked_costs.layers[l].bitops);
    }

    // Round 1: one move per layer on the picked point, each in one layer at no more bits.
    std::vector<BitPolicy> improving;
    for (const BitPolicy& single : rounds[0].candidates) {
        const auto changed = changed_layers(single, picked);
        REQUIRE(changed.size() == 1);
        const LayerBits& after = single.layers[changed.front()];
        const LayerBits& old = picked.layers[changed.front()];
        CHECK(after.activation_bits == old.activation_bits);
        CHECK(weight_bit_sum(after) <= weight_bit_sum(old));
        if (f(single) < f(picked)) improving.push_back(single);
    }
    REQUIRE(improving.size() >= 2);

    // The improving moves, and only they, are combined and scored alone.
    REQUIRE(rounds[1].candidates.size() == 1);
    BitPolicy combined = picked;
    for (const BitPolicy& single : improving) {
        const size_t l = changed_layers(single, picked).front();
        combined.layers[l] = single.layers[l];
    }
    CHECK(rounds[1].candidates.front() == combined);

    // Round 2 starts from the better of the combination and the best single move.
    BitPolicy best_single = improving.front();
    for (const BitPolicy& single : improving)
        if (f(single) < f(best_single)) best_single = single;
    CHECK((f(combined) < f(best_single)) == combination_wins);
    const BitPolicy& base = combination_wins ? combined : best_single;
    for (const BitPolicy& single : rounds[2].candidates)
        CHECK(changed_layers(single, base).size() == 1);
}

} // namespace

TEST_CASE("greedy_sensitivity: refinement moves bits between kernels at no more layer BitOPs "
          "and keeps only what improves") {
    const Graph graph = graded_graph();
    auto metric = std::make_shared<QuantizationErrorMetric>(graph, std::vector<double>{1, 2, 1, 3});
    const Metric additive = [metric](const BitPolicy& p) { return (*metric)(p); };
    SUBCASE("additive: the combination of the improving moves is kept") {
        check_refinement(graph, additive, true);
    }
    SUBCASE("interacting: the combination is worse, the best single move is kept") {
        // Two layers with mixed kernels at once cost more than any single move gains.
        const Metric interacting = [additive](const BitPolicy& p) {
            int mixed = 0;
            for (const LayerBits& layer : p.layers) mixed += layer.uniform_weights() ? 0 : 1;
            return additive(p) + (mixed >= 2 ? 1.0 : 0.0);
        };
        check_refinement(graph, interacting, false);
    }
}

TEST_CASE("greedy_sensitivity: refinement stops after a round that improves nothing") {
    const Graph graph = graded_graph();
    const SearchSpace space = kernel_space();
    // Any layer whose kernels differ costs far more than all the quantization error.
    const Metric f = [base = layer_metric({1, 2, 1, 3})](const BitPolicy& p) {
        double penalty = 0.0;
        for (const LayerBits& layer : p.layers) penalty += layer.uniform_weights() ? 0.0 : 100.0;
        return base(p) + penalty;
    };
    const Run run = run_policy(make_context(graph, space), synthetic_scorer(graph, f), 1000);
    const auto rounds = run.batches_of("refine");
    REQUIRE(rounds.size() == 1);
    // At most one move per layer (a layer whose kernels are all at the top has none).
    CHECK(!rounds.front().candidates.empty());
    CHECK(rounds.front().candidates.size() <= quantizable_layers(graph).size());
    CHECK(run.batches.back().stage == "refine");
}

TEST_CASE("greedy_sensitivity: pinned layers never change; no policy is proposed twice; every "
          "proposal lies in the space") {
    const Graph graph = graded_graph();
    SearchSpace space = kernel_space();
    const std::string pinned = quantizable_layers(graph).front()->name;
    space.pinned[pinned] = {8, 8};
    space.weight_bits = {6, 4, 2};
    // The pinned W8A8 conv alone takes 0.019; the rest must go below 6 bits somewhere, so that
    // the picked point has kernels refinement can raise.
    space.constraints.max_relative_bitops = 0.03;
    auto metric = std::make_shared<QuantizationErrorMetric>(graph, std::vector<double>{1, 2, 1, 3});
    const Metric f = [metric](const BitPolicy& p) { return (*metric)(p); };
    for (const std::string phase1 : {"grid", "separable"}) {
        INFO("phase1 ", phase1);
        const PolicyContext context =
            make_context(graph, space, {{"phase1", phase1}, {"lookahead", "2"}});
        const Run run = run_policy(context, synthetic_scorer(graph, f), 7);
        CHECK(run.stage("phase1").size() ==
              3 * (phase1 == "grid" ? 3 * 2 - 1 : (3 - 1) + (2 - 1)));
        CHECK(!run.stage("refine").empty());
        std::unordered_set<BitPolicy> seen;
        for (const BitPolicy& p : all_proposals(run)) {
            INFO(p.to_string());
            CHECK(seen.insert(p).second);
            CHECK(space.violation(graph, p) == "");
            const LayerBits* layer = p.find(pinned);
            REQUIRE(layer != nullptr);
            CHECK(layer->activation_bits == 8);
            CHECK(std::all_of(layer->weight_bits.begin(), layer->weight_bits.end(),
                              [](int b) { return b == 8; }));
        }
    }
}

TEST_CASE("greedy_sensitivity: with the real evaluator the start has zero KL and the descent "
          "ends at the lowest policy") {
    Graph graph = test::resnet_like({1, 12, 12}, {4, 8}, 10, 21);
    fold_batch_norm(graph);
    EvaluationData data{test::random_images(graph.input_shape, 32, 1),
                        test::random_images(graph.input_shape, 40, 2),
                        test::random_images(graph.input_shape, 8, 3)};
    EvaluatorOptions options;
    options.workers = 1;
    options.batch = 16;
    options.incremental_cache_bytes = int64_t{64} << 20;
    Evaluator evaluator(graph, "", std::move(data), options);

    SearchSpace space;
    space.granularity = Granularity::layer;
    space.weight_bits = {32, 4};
    space.activation_bits = {32, 4};
    PolicyContext context = make_context(graph, space, {{"metric", "kl"}});
    context.reference = evaluator.evaluate(BitPolicy::uniform(graph, 32, 32), Split::validation);
    const Scorer scorer = [&](const std::vector<BitPolicy>& candidates) {
        return evaluator.evaluate(candidates, Split::validation);
    };
    const Run run = run_policy(context, scorer, 8);

    REQUIRE(run.scored.front().policy == space.highest(graph));
    CHECK(run.scored.front().score.mean_kl == 0.0);
    const size_t layers = quantizable_layers(graph).size();
    CHECK(run.stage("phase1").size() == layers * 3);
    const std::vector<BitPolicy> steps = run.stage("descent");
    REQUIRE(!steps.empty());
    CHECK(steps.back() == space.lowest(graph));
    for (const Evaluation& e : run.scored) CHECK(e.score.mean_kl >= 0.0);
}

TEST_CASE("greedy_sensitivity: status names the stage and its progress") {
    const Graph graph = small_graph();
    const SearchSpace space = layer_space();
    auto policy = make_policy("greedy_sensitivity", make_context(graph, space));
    const Metric metric = layer_metric({1.0, 2.0, 0.5, 1.5});
    const auto step = [&](int64_t limit) {
        const Proposal proposal = policy->propose(limit);
        std::vector<Evaluation> scored;
        for (const BitPolicy& p : proposal.candidates)
            scored.push_back({p, synthetic_score(graph, p, metric(p))});
        policy->observe(scored);
        return proposal.stage;
    };
    CHECK(policy->status() == "start");
    CHECK(step(8) == "start");
    CHECK(policy->status() == "phase 1: 0/32");
    CHECK(step(8) == "phase1");
    CHECK(policy->status() == "phase 1: 8/32");
    for (int i = 0; i < 3; ++i) CHECK(step(8) == "phase1");
    CHECK(step(8) == "descent");
    // The first steps lowered single layers and were reused from phase 1; this one is scored.
    CHECK(policy->status().rfind("descent: step ", 0) == 0);
    // A score handed back for another candidate than proposed is refused.
    const Proposal next = policy->propose(1);
    REQUIRE(next.candidates.size() == 1);
    const Evaluation wrong{space.lowest(graph), synthetic_score(graph, space.lowest(graph), 0.0)};
    CHECK_THROWS_AS(policy->observe(std::span<const Evaluation>(&wrong, 1)), Error);
}
