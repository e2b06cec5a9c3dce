// Policy autoq: the DDPG agent on a toy problem, the low-level controller following goals, HIRO's
// relabelling, the reward formulas and bit maps against hand computations, and whole runs with
// synthetic scorers (determinism, independence of the batch limit, space and budget).
#include "policies/autoq/controllers.h"
#include "policies/autoq/ddpg.h"
#include "policies/policy.h"

#include "evaluator/base/error.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/ir/costs.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace mps;
using namespace mps::autoq;

namespace {

// --- Whole runs ------------------------------------------------------------------------------

// Accuracy falls with the quantization noise of every layer (~2^-bits), more for the first and
// last layers; a pruned kernel costs a fixed amount.
Score synthetic_score(const Graph& graph, const BitPolicy& policy) {
    double loss = 0.0;
    for (size_t l = 0; l < policy.layers.size(); ++l) {
        const LayerBits& layer = policy.layers[l];
        const double weight = l == 0 || l + 1 == policy.layers.size() ? 3.0 : 1.0;
        double w = 0.0;
        for (int b : layer.weight_bits) w += b == 0 ? 0.5 : std::pow(2.0, -b);
        w /= static_cast<double>(layer.weight_bits.size());
        loss += weight * (40.0 * w + 20.0 * std::pow(2.0, -layer.activation_bits));
    }
    Score s;
    s.accuracy_percent = std::max(0.0, 92.0 - loss);
    s.images = 1;
    s.costs = compute_costs(graph, policy);
    return s;
}

PolicyContext make_context(const Graph& graph, const SearchSpace& space,
                           const std::map<std::string, std::string>& params, uint64_t seed = 1) {
    const PolicyInfo* info = find_policy("autoq");
    REQUIRE(info != nullptr);
    std::map<std::string, ParamValue> values;
    for (const ParamSpec& spec : info->params) {
        const auto it = params.find(spec.name);
        values[spec.name] = parse_param(spec, it != params.end() ? it->second : spec.default_value);
    }
    PolicyContext context;
    context.graph = &graph;
    context.space = space;
    context.params = ParamValues(values);
    context.seed = seed;
    context.reference = synthetic_score(graph, BitPolicy::uniform(graph, 32, 32));
    return context;
}

struct Run {
    std::vector<BitPolicy> proposals;
    std::vector<Score> scores;
    std::vector<std::string> stages;
};

Run run_policy(const PolicyContext& context, int64_t limit) {
    auto policy = make_policy("autoq", context);
    Run run;
    for (int round = 0; round < 100000; ++round) {
        Proposal proposal = policy->propose(limit);
        if (proposal.candidates.empty()) return run;
        REQUIRE(static_cast<int64_t>(proposal.candidates.size()) <= limit);
        std::vector<Evaluation> scored;
        for (const BitPolicy& p : proposal.candidates) {
            scored.push_back({p, synthetic_score(*context.graph, p)});
            run.proposals.push_back(p);
            run.scores.push_back(scored.back().score);
            run.stages.push_back(proposal.stage);
        }
        policy->observe(scored);
        // The rewards the archive records: one per scored episode, the extrinsic reward.
        const std::vector<double> rewards = policy->rewards();
        REQUIRE(rewards.size() == scored.size());
        for (size_t i = 0; i < scored.size(); ++i)
            CHECK(rewards[i] == autoq::extrinsic_reward(
                                    autoq::parse_mode(context.params.text("mode")),
                                    {context.params.real("psi_acc"), context.params.real("psi_bitops"),
                                     context.params.real("psi_mem")},
                                    scored[i].score, context.reference.accuracy_percent));
    }
    FAIL("autoq did not finish");
    return run;
}

// conv(4) conv(4) pool conv(8) conv(8) pool fc(16) fc(10) on 1x8x8: six quantizable layers.
Graph small_graph() { return test::vgg_like({1, 8, 8}, {4, 8}, 2, 16, 10, 5); }

// Small networks keep the runs quick; the algorithm is the same.
const std::map<std::string, std::string> quick{{"episodes", "24"},      {"warmup_episodes", "8"},
                                               {"episodes_per_batch", "4"}, {"hidden", "32"},
                                               {"batch", "16"},         {"llc_updates", "8"}};

// --- The low-level controller on a synthetic layer --------------------------------------------

LayerView synthetic_layer(size_t kernels, size_t bit_count, uint64_t seed) {
    test::Rng rng(seed);
    LayerView layer;
    for (int i = 0; i < 16; ++i) layer.state.push_back(rng.uniform(0.0f, 1.0f));
    for (size_t k = 0; k < kernels; ++k) {
        KernelFeatures f;
        f.mean = rng.uniform(0.0f, 1.0f);
        f.std = rng.uniform(0.0f, 1.0f);
        f.max_abs = rng.uniform(0.0f, 1.0f);
        for (size_t b = 0; b < bit_count; ++b) f.error.push_back(rng.uniform(0.0f, 0.2f) * static_cast<float>(b + 1));
        layer.kernels.push_back(f);
    }
    return layer;
}

} // namespace

TEST_CASE("autoq: actions map onto the allowed bits as the spec says") {
    const std::vector<int> bits{8, 6, 4, 3, 2};
    // [min - 0.5, max + 0.5] = [1.5, 8.5]: 0 -> 1.5 -> 2, 1 -> 8.5 -> 8.
    CHECK(action_to_bits(0.0, bits) == 2);
    CHECK(action_to_bits(1.0, bits) == 8);
    CHECK(action_to_bits(0.5, bits) == 6);       // 5.0: between 4 and 6, ties go up
    CHECK(action_to_bits(2.9 / 7.0, bits) == 4); // 4.4
    CHECK(action_to_bits(2.4 / 7.0, bits) == 4); // 3.9
    CHECK(action_to_bits(1.9 / 7.0, bits) == 3); // 3.4
    CHECK(action_to_bits(0.9 / 7.0, bits) == 2); // 2.4
    CHECK(goal_bits(0.5, bits) == doctest::Approx(5.0));
    CHECK(goal_bits(0.0, bits) == doctest::Approx(2.0)); // clamped into [min, max]
    CHECK(goal_action(5.0, bits) == doctest::Approx(0.5));
    CHECK(goal_bits(goal_action(3.25, bits), bits) == doctest::Approx(3.25));
    const std::vector<int> with_pruning{8, 4, 2, 0};
    CHECK(action_to_bits(0.0, with_pruning) == 0);       // [-0.5, 8.5]
    CHECK(action_to_bits(1.4 / 9.0, with_pruning) == 0); // 0.9: nearer 0 than 2
    CHECK(action_to_bits(1.6 / 9.0, with_pruning) == 2); // 1.1
    CHECK(action_to_bits(7.2 / 9.0, with_pruning) == 8); // 6.7
}

TEST_CASE("autoq: both modes' rewards and the intrinsic reward against hand computations") {
    Score s;
    s.accuracy_percent = 85.0;
    s.costs.bitops = 625;
    s.costs.fp32_bitops = 10000; // relative 0.0625
    s.costs.weight_bits = 1000;
    s.costs.fp32_weight_bits = 8000; // relative 0.125
    const RewardWeights w{2.0, 1.0, 0.5};
    CHECK(extrinsic_reward(Mode::resource_constrained, w, s, 90.0) == doctest::Approx(-0.5));
    CHECK(extrinsic_reward(Mode::accuracy_guaranteed, w, s, 90.0) ==
          doctest::Approx(2.0 * std::log(0.85) - std::log(0.0625) - 0.5 * std::log(0.125)));
    CHECK(extrinsic_reward(Mode::accuracy_guaranteed, RewardWeights{}, s, 90.0) ==
          doctest::Approx(2.0 * std::log(0.85) - std::log(0.0625)));
    s.accuracy_percent = 0.0; // finite, very bad
    CHECK(std::isfinite(extrinsic_reward(Mode::accuracy_guaranteed, w, s, 90.0)));
    CHECK(intrinsic_reward(5.0, 4.5, 8) == doctest::Approx(-0.0625));
    CHECK(intrinsic_reward(4.5, 4.5, 8) == 0.0);
    CHECK_THROWS_AS(parse_mode("latency"), Error);

    // The LLC's transitions: the intrinsic reward at the layer's last kernel, eta * R on all.
    const std::vector<int> bits{8, 4, 2};
    DdpgConfig config;
    config.hidden = 8;
    config.batch = 4;
    config.replay_size = 100;
    LowLevelController llc(config, 16, bits, bits);
    const LayerView layer = synthetic_layer(4, 3, 3);
    Draws draws(5);
    const LayerWalk walk = llc.walk(layer, goal_action(4.0, bits), {Exploration::Kind::uniform, 0.0}, draws);
    llc.remember(walk, 0.25);
    REQUIRE(llc.agent().replay().size() == 4);
    for (size_t k = 0; k < 3; ++k) {
        CHECK(llc.agent().replay()[k].reward == doctest::Approx(0.25));
        CHECK_FALSE(llc.agent().replay()[k].terminal);
        CHECK(llc.agent().replay()[k].next_state == walk.states[k + 1]);
    }
    CHECK(llc.agent().replay()[3].terminal);
    CHECK(llc.agent().replay()[3].reward ==
          doctest::Approx(0.25 - std::abs(walk.mean_bits() - 4.0) / 8.0));
}

TEST_CASE("autoq: DDPG learns a one-step problem with reward -(a - 0.3)^2") {
    DdpgConfig config;
    config.state_dim = 2;
    config.action_dim = 1;
    config.actor_lr = 1e-3;
    config.batch = 32;
    config.replay_size = 2000;
    config.seed = 7;
    DdpgAgent agent(config);
    Draws draws(11);
    const std::vector<float> state{0.5f, 1.0f};
    const double start = agent.act(state)[0];
    for (int step = 0; step < 1500; ++step) {
        const double sigma = 0.5 * std::pow(0.997, step);
        const double a = draws.truncated_normal(agent.act(state)[0], sigma, 0.0, 1.0);
        agent.remember({state, {static_cast<float>(a)}, -(a - 0.3) * (a - 0.3), {}, true});
        agent.update();
    }
    const double learnt = agent.act(state)[0];
    CAPTURE(start);
    CHECK(std::abs(start - 0.3) > 0.1); // it had to move
    CHECK(std::abs(learnt - 0.3) < 0.05);
}

TEST_CASE("autoq: the low-level controller learns to meet goals; HIRO relabels with the goal "
          "that reproduces the achieved bits") {
    const std::vector<int> bits{8, 6, 4, 3, 2};
    DdpgConfig config;
    config.hidden = 64; // HAQ's learning rates, batch and tau; smaller networks for speed
    config.replay_size = 4000;
    config.seed = 3;
    LowLevelController llc(config, 16, bits, bits);
    const LayerView layer = synthetic_layer(12, bits.size(), 9);
    Draws draws(13);
    const auto miss = [&](double goal) {
        const LayerWalk w = llc.walk(layer, goal_action(goal, bits), {}, draws);
        return std::abs(w.mean_bits() - goal);
    };
    const std::vector<double> goals{2.5, 3.0, 4.0, 5.0, 6.5, 7.5};
    double before = 0.0;
    for (double g : goals) before = std::max(before, miss(g));
    for (int episode = 0; episode < 1000; ++episode) {
        const double sigma = 0.5 * std::pow(0.997, episode);
        const LayerWalk walk = llc.walk(layer, draws.unit(), {Exploration::Kind::noise, sigma}, draws);
        llc.remember(walk, 0.0);
        for (int u = 0; u < 16; ++u) llc.agent().update();
    }
    CAPTURE(before);
    CHECK(before > 0.5);
    for (double g : goals) {
        CAPTURE(g);
        CHECK(miss(g) <= 0.25);
    }

    // The walk was asked for 3 bits but did what the goal 6.5 makes it do: relabelling picks 6.5.
    LayerWalk walk = llc.walk(layer, goal_action(6.5, bits), {}, draws);
    walk.goal_action = goal_action(3.0, bits);
    walk.goal = 3.0;
    const std::vector<double> candidates{goal_action(3.0, bits), goal_action(4.0, bits),
                                         goal_action(6.5, bits), goal_action(8.0, bits)};
    CHECK(llc.relabel(layer, walk, candidates) == candidates[2]);
}

TEST_CASE("autoq: the relabelling picks the candidate whose low-level actions match") {
    // A low-level policy that outputs the goal for every kernel: the achieved action explains.
    const std::vector<float> taken{0.42f, 0.42f, 0.42f};
    const std::vector<double> candidates{0.8, 0.1, 0.4, 0.45, 0.42};
    const auto copy_goal = [](double g) { return std::vector<float>(3, static_cast<float>(g)); };
    CHECK(best_explaining(candidates, taken, copy_goal) == 4);
    const std::vector<double> ties{0.5, 0.5};
    CHECK(best_explaining(ties, taken, copy_goal) == 0);
}

TEST_CASE("autoq: seeded runs repeat exactly, whatever the batch limit") {
    const Graph graph = small_graph();
    SearchSpace space;
    space.granularity = Granularity::kernel;
    space.allow_pruning = true;
    space.constraints.max_relative_bitops = 5.0 * 5.0 / 1024.0;
    const PolicyContext context = make_context(graph, space, quick);
    const Run a = run_policy(context, 64);
    const Run b = run_policy(context, 3);
    REQUIRE(a.proposals.size() == 24);
    CHECK(a.proposals == b.proposals);
    CHECK(a.stages == b.stages);
    CHECK(a.stages.front() == "warmup");
    CHECK(a.stages.back() == "episode");
    const Run c = run_policy(make_context(graph, space, quick, 2), 64);
    CHECK_FALSE(a.proposals == c.proposals);
    // Learnt episodes differ from one another (noise, learning), not one repeated policy.
    CHECK_FALSE(a.proposals[20] == a.proposals[21]);
}

TEST_CASE("autoq: every proposal lies in the space and meets the budget after projection") {
    const Graph graph = small_graph();
    for (Granularity granularity : {Granularity::kernel, Granularity::layer, Granularity::network}) {
        CAPTURE(granularity_name(granularity));
        SearchSpace space;
        space.granularity = granularity;
        space.allow_pruning = true;
        space.weight_bits = {8, 4, 3, 2};
        space.activation_bits = {8, 4};
        space.pinned["conv0"] = {8, 8};
        space.constraints.max_relative_bitops = 4.0 * 6.0 / 1024.0;
        space.constraints.max_weight_bytes = compute_costs(graph, BitPolicy::uniform(graph, 6, 8)).weight_bytes();
        for (const char* mode : {"resource_constrained", "accuracy_guaranteed"}) {
            CAPTURE(mode);
            auto params = quick;
            params["mode"] = mode;
            const Run run = run_policy(make_context(graph, space, params), 5);
            REQUIRE(run.proposals.size() == 24);
            bool pruned = false;
            double closest = 0.0; // highest BitOPs used, relative to the budget
            for (const BitPolicy& p : run.proposals) {
                CHECK(space.violation(graph, p) == "");
                const Costs costs = compute_costs(graph, p);
                CHECK(meets_cost_constraints(space.constraints, costs));
                closest = std::max(closest, costs.relative_bitops() / *space.constraints.max_relative_bitops);
                for (const LayerBits& layer : p.layers)
                    for (int b : layer.weight_bits) pruned = pruned || b == 0;
            }
            CHECK(pruned == (granularity == Granularity::kernel));
            // The projection stops at the budget instead of far below it.
            if (granularity == Granularity::kernel) CHECK(closest > 0.9);
        }
    }
}

TEST_CASE("autoq: without a cost constraint the learnt policies trade bits for reward") {
    // accuracy_guaranteed: the reward favours few BitOPs at little accuracy loss; the learnt
    // episodes must beat the random warm-up episodes on average.
    const Graph graph = small_graph();
    SearchSpace space;
    space.granularity = Granularity::layer;
    auto params = quick;
    params["mode"] = "accuracy_guaranteed";
    params["episodes"] = "80";
    params["warmup_episodes"] = "16";
    params["hidden"] = "64";
    params["actor_lr"] = "1e-3";
    const PolicyContext context = make_context(graph, space, params);
    const Run run = run_policy(context, 8);
    REQUIRE(run.scores.size() == 80);
    const auto reward = [&](size_t i) {
        return extrinsic_reward(Mode::accuracy_guaranteed, RewardWeights{}, run.scores[i],
                                context.reference.accuracy_percent);
    };
    double warmup = 0.0, last = 0.0;
    for (size_t i = 0; i < 16; ++i) warmup += reward(i) / 16.0;
    for (size_t i = 64; i < 80; ++i) last += reward(i) / 16.0;
    CAPTURE(warmup);
    CHECK(last > warmup);
}

// Not run by default (doctest -tc='*overhead*' --no-skip): the policy's own time for 300
// episodes on the zoo's resnet8 with a synthetic scorer (no evaluation).
TEST_CASE("autoq: overhead of 300 episodes on resnet8" * doctest::skip()) {
    Graph graph = import_onnx(std::string(MPSEARCH_SOURCE_DIR) + "/models/resnet8.onnx");
    fold_batch_norm(graph);
    SearchSpace space;
    space.allow_pruning = true;
    space.constraints.max_relative_bitops = 4.0 * 4.0 / 1024.0;
    const PolicyContext context = make_context(graph, space, {});
    const auto start = std::chrono::steady_clock::now();
    const Run run = run_policy(context, 32);
    const double seconds =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("autoq: %zu episodes on resnet8 in %.1f s (%.1f ms per episode)\n",
                run.proposals.size(), seconds, 1000.0 * seconds / static_cast<double>(run.proposals.size()));
    CHECK(run.proposals.size() == 300);
}
