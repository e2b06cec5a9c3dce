// The policy support code (parameters, registry), the search space's rules, the pick among
// scored points, and the two baseline policies `uniform` and `random`.
#include "evaluator/base/error.h"
#include "evaluator/ir/costs.h"
#include "policies/policy.h"
#include "policies/search_space.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <set>

using namespace mps;

namespace {

// input 1x6x6 -> conv0 (4 kernels 3x3, no padding: 4x4x4) -> relu1 -> conv2 (3 kernels: 3x2x2)
// -> relu3 -> flatten4 (12) -> fully_connected5 (2 kernels)
Graph three_layer_model() {
    test::GraphBuilder b({1, 6, 6});
    test::ConvSpec spec;
    spec.pad_begin = spec.pad_end = {0, 0};
    std::string x = b.relu(b.conv(b.input(), 4, spec));
    x = b.flatten(b.relu(b.conv(x, 3, spec)));
    return b.finish(b.fully_connected(x, 2));
}

ParamSpec integer_spec() {
    ParamSpec s;
    s.name = "lookahead";
    s.kind = ParamSpec::Kind::integer;
    s.default_value = "4";
    s.min = 1;
    s.max = 16;
    return s;
}

ParamSpec real_spec() {
    ParamSpec s;
    s.name = "fraction";
    s.kind = ParamSpec::Kind::real;
    s.default_value = "0.5";
    s.min = 0.0;
    s.max = 1.0;
    return s;
}

ParamSpec boolean_spec() {
    ParamSpec s;
    s.name = "refine";
    s.kind = ParamSpec::Kind::boolean;
    s.default_value = "yes";
    return s;
}

ParamSpec text_spec() {
    ParamSpec s;
    s.name = "metric";
    s.kind = ParamSpec::Kind::text;
    s.default_value = "kl";
    s.choices = {"accuracy", "kl", "sqnr"};
    return s;
}

std::string error_of(auto&& f) {
    try {
        f();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

SearchSpace small_space(Granularity g) {
    SearchSpace s;
    s.granularity = g;
    s.weight_bits = {8, 4, 2};
    s.activation_bits = {8, 4};
    return s;
}

PolicyContext context_for(const Graph& graph, SearchSpace space, uint64_t seed = 1) {
    PolicyContext c;
    c.graph = &graph;
    c.space = std::move(space);
    c.seed = seed;
    return c;
}

std::vector<BitPolicy> take(SearchPolicy& policy, const std::vector<int64_t>& batches) {
    std::vector<BitPolicy> all;
    for (int64_t limit : batches) {
        const Proposal p = policy.propose(limit);
        CHECK(static_cast<int64_t>(p.candidates.size()) <= limit);
        all.insert(all.end(), p.candidates.begin(), p.candidates.end());
    }
    return all;
}

Evaluation point(double accuracy, int64_t bitops, int64_t weight_bits, int64_t flops = 100) {
    Evaluation e;
    e.score.accuracy_percent = accuracy;
    e.score.costs.bitops = bitops;
    e.score.costs.fp32_bitops = 1000;
    e.score.costs.weight_bits = weight_bits;
    e.score.costs.flops = flops;
    return e;
}

} // namespace

TEST_CASE("policies: parse_param reads every kind and checks ranges and choices") {
    CHECK(std::get<int64_t>(parse_param(integer_spec(), "4")) == 4);
    CHECK(std::get<int64_t>(parse_param(integer_spec(), " +16 ")) == 16);
    CHECK(std::get<int64_t>(parse_param(integer_spec(), "1")) == 1);
    CHECK(error_of([] { parse_param(integer_spec(), "x"); }) ==
          "policy parameter 'lookahead': expected an integer in [1, 16], got 'x'");
    CHECK(error_of([] { parse_param(integer_spec(), "17"); }).find("got '17'") != std::string::npos);
    CHECK_THROWS_AS(parse_param(integer_spec(), "0"), Error);
    CHECK_THROWS_AS(parse_param(integer_spec(), "4.5"), Error);
    CHECK_THROWS_AS(parse_param(integer_spec(), ""), Error);
    CHECK_THROWS_AS(parse_param(integer_spec(), "+-3"), Error);
    CHECK_THROWS_AS(parse_param(integer_spec(), "99999999999999999999"), Error);
    ParamSpec at_least_one = integer_spec();
    at_least_one.max.reset();
    CHECK(std::get<int64_t>(parse_param(at_least_one, "1000000")) == 1000000);
    CHECK(error_of([&] { parse_param(at_least_one, "-2"); }) ==
          "policy parameter 'lookahead': expected an integer >= 1, got '-2'");

    CHECK(std::get<double>(parse_param(real_spec(), "0.25")) == 0.25);
    CHECK(std::get<double>(parse_param(real_spec(), "1e-3")) == 0.001);
    CHECK(std::get<double>(parse_param(real_spec(), "1")) == 1.0);
    CHECK(error_of([] { parse_param(real_spec(), "1.5"); }) ==
          "policy parameter 'fraction': expected a real number in [0, 1], got '1.5'");
    CHECK_THROWS_AS(parse_param(real_spec(), "nan"), Error);
    CHECK_THROWS_AS(parse_param(real_spec(), "0.5x"), Error);
    ParamSpec any_real = real_spec();
    any_real.min.reset();
    any_real.max.reset();
    CHECK(std::get<double>(parse_param(any_real, "-3.5")) == -3.5);
    CHECK_THROWS_AS(parse_param(any_real, "inf"), Error);

    for (const char* yes : {"true", "yes", "True", "YES"})
        CHECK(std::get<bool>(parse_param(boolean_spec(), yes)) == true);
    for (const char* no : {"false", "no", "False", "NO"})
        CHECK(std::get<bool>(parse_param(boolean_spec(), no)) == false);
    CHECK(error_of([] { parse_param(boolean_spec(), "maybe"); }).find("expected a boolean") !=
          std::string::npos);
    CHECK_THROWS_AS(parse_param(boolean_spec(), "1"), Error);

    CHECK(std::get<std::string>(parse_param(text_spec(), "sqnr")) == "sqnr");
    CHECK(error_of([] { parse_param(text_spec(), "kld"); }) ==
          "policy parameter 'metric': expected one of accuracy, kl, sqnr, got 'kld'");
    ParamSpec free_text = text_spec();
    free_text.choices.clear();
    CHECK(std::get<std::string>(parse_param(free_text, "anything")) == "anything");
}

TEST_CASE("policies: default_params, typed access and param_to_string") {
    const std::vector<ParamSpec> specs{integer_spec(), real_spec(), boolean_spec(), text_spec()};
    const ParamValues values = default_params(specs);
    CHECK(values.all().size() == 4);
    CHECK(values.integer("lookahead") == 4);
    CHECK(values.real("fraction") == 0.5);
    CHECK(values.boolean("refine") == true);
    CHECK(values.text("metric") == "kl");
    CHECK(error_of([&] { values.integer("metric"); }).find("'metric' is a text, not an integer") !=
          std::string::npos);
    CHECK(error_of([&] { values.real("missing"); }).find("'missing' is not set") !=
          std::string::npos);
    CHECK_THROWS_AS(values.boolean("lookahead"), Error);

    CHECK(param_to_string(ParamValue{int64_t{4}}) == "4");
    CHECK(param_to_string(ParamValue{0.5}) == "0.5");
    CHECK(param_to_string(ParamValue{0.1}) == "0.1");
    CHECK(param_to_string(ParamValue{true}) == "true");
    CHECK(param_to_string(ParamValue{false}) == "false");
    CHECK(param_to_string(ParamValue{std::string("kl")}) == "kl");
    // What param_to_string writes reads back as the same value.
    for (const ParamSpec& spec : specs)
        CHECK(parse_param(spec, param_to_string(values.all().at(spec.name))) ==
              values.all().at(spec.name));
}

TEST_CASE("policies: registry finds and builds the registered policies") {
    const auto policies = registered_policies();
    REQUIRE(policies.size() >= 2);
    CHECK(policies[0].name == "uniform");
    CHECK(policies[1].name == "random");
    std::set<std::string> names;
    for (const PolicyInfo& info : policies) {
        CHECK(names.insert(info.name).second);
        CHECK(!info.summary.empty());
        CHECK(static_cast<bool>(info.make));
        // Every declared default parses.
        CHECK_NOTHROW(default_params(info.params));
    }
    REQUIRE(find_policy("random") != nullptr);
    CHECK(find_policy("random")->name == "random");
    CHECK(find_policy("random")->params.size() == 2);
    CHECK(find_policy("uniform")->params.empty());
    CHECK(find_policy("Random") == nullptr);
    CHECK(find_policy("annealing") == nullptr);

    const Graph g = three_layer_model();
    const std::string message =
        error_of([&] { make_policy("annealing", context_for(g, small_space(Granularity::layer))); });
    CHECK(message.find("unknown policy 'annealing'") != std::string::npos);
    CHECK(message.find("registered policies: uniform, random") != std::string::npos);

    // Parameters left out take their defaults; undeclared ones are refused.
    auto random = make_policy("random", context_for(g, small_space(Granularity::layer)));
    REQUIRE(random);
    CHECK(random->propose(3).candidates.size() == 3);
    PolicyContext typo = context_for(g, small_space(Granularity::layer));
    typo.params = ParamValues({{"fit_budgets", true}});
    CHECK(error_of([&] { make_policy("random", typo); }).find("no parameter 'fit_budgets'") !=
          std::string::npos);
    PolicyContext no_graph;
    CHECK_THROWS_AS(make_policy("uniform", no_graph), Error);
}

TEST_CASE("policies: granularity and objective names") {
    for (Granularity g : {Granularity::network, Granularity::layer, Granularity::kernel})
        CHECK(parse_granularity(granularity_name(g)) == g);
    CHECK(std::string(granularity_name(Granularity::kernel)) == "kernel");
    CHECK(error_of([] { parse_granularity("channel"); }).find("'channel'") != std::string::npos);
    for (Objective o : {Objective::accuracy, Objective::relative_bitops, Objective::weight_bytes})
        CHECK(parse_objective(objective_name(o)) == o);
    CHECK(std::string(objective_name(Objective::relative_bitops)) == "relative_bitops");
    CHECK_THROWS_AS(parse_objective("bitops"), Error);
}

TEST_CASE("policies: highest, lowest and kernel_weight_bits honour pins and pruning") {
    const Graph g = three_layer_model();
    SearchSpace s = small_space(Granularity::kernel);
    s.pinned["fully_connected5"] = {8, 32};

    const BitPolicy high = s.highest(g);
    REQUIRE(high.layers.size() == 3);
    CHECK(high.layers[0] == LayerBits{"conv0", 8, {8, 8, 8, 8}});
    CHECK(high.layers[1] == LayerBits{"conv2", 8, {8, 8, 8}});
    CHECK(high.layers[2] == LayerBits{"fully_connected5", 32, {8, 8}});
    const BitPolicy low = s.lowest(g);
    CHECK(low.layers[0] == LayerBits{"conv0", 4, {2, 2, 2, 2}});
    CHECK(low.layers[2] == LayerBits{"fully_connected5", 32, {8, 8}});
    CHECK(s.violation(g, high).empty());
    CHECK(s.violation(g, low).empty());

    CHECK(s.kernel_weight_bits() == std::vector<int>{8, 4, 2});
    s.allow_pruning = true;
    CHECK(s.kernel_weight_bits() == std::vector<int>{8, 4, 2, 0});
    s.granularity = Granularity::layer; // pruning single kernels needs kernel granularity
    CHECK(s.kernel_weight_bits() == std::vector<int>{8, 4, 2});
    s.allow_pruning = false;
    s.granularity = Granularity::kernel;
    // Lowest never prunes, even when pruning is allowed.
    s.allow_pruning = true;
    CHECK(s.lowest(g).layers[0].weight_bits == std::vector<int>{2, 2, 2, 2});

    SearchSpace empty = s;
    empty.weight_bits.clear();
    CHECK_THROWS_AS(empty.highest(g), Error);
}

TEST_CASE("policies: next_lower_bits and next_higher_bits step along a descending list") {
    const std::vector<int> allowed{8, 4, 2, 0};
    CHECK(next_lower_bits(allowed, 8) == 4);
    CHECK(next_lower_bits(allowed, 2) == 0);
    CHECK_FALSE(next_lower_bits(allowed, 0).has_value()); // the end of the list
    CHECK_FALSE(next_lower_bits(allowed, 6).has_value()); // not in the list
    CHECK(next_higher_bits(allowed, 0) == 2);
    CHECK(next_higher_bits(allowed, 4) == 8);
    CHECK_FALSE(next_higher_bits(allowed, 8).has_value());
    CHECK_FALSE(next_higher_bits(allowed, 32).has_value());
    CHECK_FALSE(next_lower_bits({}, 8).has_value());
    CHECK_FALSE(next_higher_bits({}, 8).has_value());
}

TEST_CASE("policies: violation names the first rule a policy breaks") {
    const Graph g = three_layer_model();
    SearchSpace s = small_space(Granularity::kernel);
    s.pinned["conv0"] = {8, 8};
    const BitPolicy base = s.lowest(g);
    REQUIRE(s.violation(g, base).empty());

    SUBCASE("not a valid policy for the graph") {
        BitPolicy p = base;
        p.layers[1].weight_bits.pop_back();
        CHECK(s.violation(g, p).find("conv2") != std::string::npos);
        BitPolicy q = base;
        q.layers.pop_back();
        CHECK(!s.violation(g, q).empty());
    }
    SUBCASE("pinned layer at other bits") {
        BitPolicy p = base;
        p.layers[0].weight_bits[3] = 4;
        const std::string v = s.violation(g, p);
        CHECK(v.find("'conv0' is pinned to W8A8") != std::string::npos);
        BitPolicy q = base;
        q.layers[0].activation_bits = 4;
        CHECK(!s.violation(g, q).empty());
    }
    SUBCASE("bits outside the allowed lists") {
        BitPolicy p = base;
        p.layers[1].weight_bits[1] = 3; // valid bit-width, but not in {8, 4, 2}
        const std::string v = s.violation(g, p);
        CHECK(v.find("layer 'conv2' kernel 1") != std::string::npos);
        CHECK(v.find("8, 4, 2") != std::string::npos);
        BitPolicy q = base;
        q.layers[2].activation_bits = 2;
        CHECK(s.violation(g, q).find("activation bits 2") != std::string::npos);
    }
    SUBCASE("pruning: only single kernels, only at kernel granularity when allowed") {
        BitPolicy p = base;
        p.layers[1].weight_bits[0] = 0;
        CHECK(!s.violation(g, p).empty()); // pruning not allowed
        s.allow_pruning = true;
        CHECK(s.violation(g, p).empty());
        p.layers[1].weight_bits = {0, 0, 0};
        CHECK(s.violation(g, p).find("every kernel is pruned") != std::string::npos);
        s.granularity = Granularity::layer;
        CHECK(!s.violation(g, p).empty());
    }
    SUBCASE("granularity layer: kernels of a layer share their bits") {
        s.granularity = Granularity::layer;
        BitPolicy p = base;
        p.layers[1].weight_bits = {4, 4, 4};
        p.layers[2].activation_bits = 8;
        CHECK(s.violation(g, p).empty());
        p.layers[1].weight_bits = {4, 2, 4};
        CHECK(s.violation(g, p).find("granularity is layer") != std::string::npos);
        s.granularity = Granularity::kernel;
        CHECK(s.violation(g, p).empty());
    }
    SUBCASE("granularity network: unpinned layers share their bits; pins may differ") {
        s.granularity = Granularity::network;
        BitPolicy p = base; // conv0 pinned W8A8, the others W2A4
        CHECK(s.violation(g, p).empty());
        p.layers[2].weight_bits = {4, 4};
        CHECK(s.violation(g, p).find("granularity is network") != std::string::npos);
        p.layers[1].weight_bits = {4, 4, 4};
        CHECK(s.violation(g, p).empty());
        p.layers[1].activation_bits = 8;
        CHECK(!s.violation(g, p).empty());
    }
}

TEST_CASE("policies: meets_cost_constraints checks every cost limit and ignores accuracy") {
    Costs c;
    c.bitops = 250;
    c.fp32_bitops = 1000;
    c.weight_bits = 800; // 100 bytes
    c.flops = 60;        // 30 MACs
    Constraints none;
    CHECK(meets_cost_constraints(none, c));
    Constraints k;
    k.max_relative_bitops = 0.25;
    CHECK(meets_cost_constraints(k, c));
    k.max_relative_bitops = 0.2499;
    CHECK(!meets_cost_constraints(k, c));
    k.max_relative_bitops.reset();
    k.max_weight_bytes = 100.0;
    CHECK(meets_cost_constraints(k, c));
    k.max_weight_bytes = 99.9;
    CHECK(!meets_cost_constraints(k, c));
    k.max_weight_bytes.reset();
    k.max_macs = 30;
    CHECK(meets_cost_constraints(k, c));
    k.max_macs = 29;
    CHECK(!meets_cost_constraints(k, c));
    k.max_macs.reset();
    k.max_accuracy_drop = 0.0;
    CHECK(meets_cost_constraints(k, c));
}

TEST_CASE("policies: pick per objective, with the accuracy drop, ties to the earliest") {
    // accuracy, bitops (of 1000), weight bits
    const std::vector<Evaluation> points{
        point(90.0, 500, 8000), // 0
        point(92.0, 400, 9000), // 1
        point(92.0, 300, 7000), // 2 same accuracy as 1
        point(85.0, 100, 6000), // 3
        point(88.0, 100, 4000), // 4 same bitops as 3, higher accuracy
        point(70.0, 50, 4000),  // 5 same weight bytes as 4, lower accuracy
    };
    Constraints none;
    CHECK(pick(points, none, Objective::accuracy, 93.0) == size_t{1});
    CHECK(pick(points, none, Objective::relative_bitops, 93.0) == size_t{5});
    CHECK(pick(points, none, Objective::weight_bytes, 93.0) == size_t{4});

    Constraints budget;
    budget.max_relative_bitops = 0.35;
    CHECK(pick(points, budget, Objective::accuracy, 93.0) == size_t{2});
    budget.max_weight_bytes = 800.0;
    CHECK(pick(points, budget, Objective::accuracy, 93.0) == size_t{4});

    Constraints drop;
    drop.max_accuracy_drop = 5.0; // at least 88 points
    CHECK(pick(points, drop, Objective::relative_bitops, 93.0) == size_t{4});
    CHECK(pick(points, drop, Objective::weight_bytes, 93.0) == size_t{4});
    drop.max_accuracy_drop = 1.0; // at least 92: points 1 and 2
    CHECK(pick(points, drop, Objective::relative_bitops, 93.0) == size_t{2});
    // Exactly at the limit counts, despite the rounding of 92.66 - 0.66.
    CHECK(pick(std::vector<Evaluation>{point(92.0, 10, 10)}, Constraints{{}, {}, {}, 0.66},
               Objective::accuracy, 92.66) == size_t{0});

    Constraints impossible;
    impossible.max_macs = 10; // every point has 50 MACs
    CHECK(!pick(points, impossible, Objective::accuracy, 93.0));
    CHECK(!pick(std::vector<Evaluation>{}, none, Objective::accuracy, 93.0));

    // Full ties: the earliest.
    const std::vector<Evaluation> same{point(80.0, 100, 100), point(80.0, 100, 100)};
    CHECK(pick(same, none, Objective::accuracy, 90.0) == size_t{0});
    CHECK(pick(same, none, Objective::relative_bitops, 90.0) == size_t{0});
    CHECK(pick(same, none, Objective::weight_bytes, 90.0) == size_t{0});
}

TEST_CASE("policies: uniform proposes the grid, most expensive first, pins kept, then finishes") {
    const Graph g = three_layer_model();
    SearchSpace s = small_space(Granularity::kernel);
    s.weight_bits = {8, 4, 2};
    s.activation_bits = {8, 4, 2};
    s.pinned["conv0"] = {8, 32};
    auto policy = make_policy("uniform", context_for(g, s));

    const Proposal first = policy->propose(4);
    CHECK(first.stage == "uniform");
    CHECK(first.candidates.size() == 4);
    const std::vector<BitPolicy> rest = take(*policy, {3, 100});
    CHECK(policy->propose(5).candidates.empty());
    CHECK(policy->propose(1).candidates.empty());

    std::vector<BitPolicy> all = first.candidates;
    all.insert(all.end(), rest.begin(), rest.end());
    // w * a: 64 | 32 (w8) 32 (w4) | 16 (w8) 16 (w4) 16 (w2) | 8 (w4) 8 (w2) | 4
    const std::vector<std::pair<int, int>> expected{{8, 8}, {8, 4}, {4, 8}, {8, 2}, {4, 4},
                                                    {2, 8}, {4, 2}, {2, 4}, {2, 2}};
    REQUIRE(all.size() == expected.size());
    for (size_t i = 0; i < all.size(); ++i) {
        CAPTURE(i);
        const auto [w, a] = expected[i];
        CHECK(all[i].layers[0] == LayerBits{"conv0", 32, {8, 8, 8, 8}});
        CHECK(all[i].layers[1] == LayerBits{"conv2", a, {w, w, w}});
        CHECK(all[i].layers[2] == LayerBits{"fully_connected5", a, {w, w}});
        CHECK(s.violation(g, all[i]).empty());
    }
}

TEST_CASE("policies: random candidates lie in the space at every granularity") {
    const Graph g = three_layer_model();
    for (Granularity gran : {Granularity::network, Granularity::layer, Granularity::kernel}) {
        CAPTURE(granularity_name(gran));
        SearchSpace s = small_space(gran);
        s.allow_pruning = true;
        s.pinned["fully_connected5"] = {16, 8};
        PolicyContext c = context_for(g, s, 3);
        c.params = ParamValues({{"prune_probability", 0.3}});
        auto policy = make_policy("random", c);
        const Proposal p = policy->propose(200);
        CHECK(p.stage == "random");
        REQUIRE(p.candidates.size() == 200);
        std::set<std::string> distinct;
        int pruned = 0;
        for (const BitPolicy& candidate : p.candidates) {
            CHECK(s.violation(g, candidate) == "");
            distinct.insert(candidate.to_string());
            for (int b : candidate.layers[0].weight_bits) pruned += b == 0;
        }
        // It samples: network has 3 x 2 settings, layer 6 x 6 (two unpinned layers), kernel
        // many more.
        const size_t variety = gran == Granularity::network ? 6u
                               : gran == Granularity::layer ? 30u
                                                            : 150u;
        CHECK(distinct.size() >= variety);
        if (gran == Granularity::kernel)
            CHECK(pruned > 100); // about 0.3 of 800 kernels
        else
            CHECK(pruned == 0);
        // Never finishes by itself.
        CHECK(policy->propose(7).candidates.size() == 7);
    }
}

TEST_CASE("policies: random is a function of the seed, whatever the batch sizes") {
    const Graph g = three_layer_model();
    SearchSpace s = small_space(Granularity::kernel);
    s.allow_pruning = true;
    s.constraints.max_relative_bitops = 0.012;
    const auto run = [&](uint64_t seed, const std::vector<int64_t>& batches) {
        auto policy = make_policy("random", context_for(g, s, seed));
        return take(*policy, batches);
    };
    const std::vector<BitPolicy> one_batch = run(42, {20});
    CHECK(run(42, {20}) == one_batch);
    CHECK(run(42, {1, 2, 3, 4, 10}) == one_batch);
    CHECK(run(42, {7, 7, 6}) == one_batch);
    const std::vector<BitPolicy> other = run(43, {20});
    int same = 0;
    for (size_t i = 0; i < other.size(); ++i) same += other[i] == one_batch[i];
    CHECK(same < 3);
}

TEST_CASE("policies: random with fit_budget meets a BitOPs budget that plain samples break") {
    const Graph g = three_layer_model();
    for (Granularity gran : {Granularity::network, Granularity::layer, Granularity::kernel}) {
        CAPTURE(granularity_name(gran));
        SearchSpace s = small_space(gran);
        s.weight_bits = {8, 6, 4, 3, 2};
        s.activation_bits = {8, 6, 4, 3, 2};
        s.allow_pruning = gran == Granularity::kernel;
        s.pinned["fully_connected5"] = {8, 8};
        // A budget a little above the lowest policy: at network granularity only W2A2, W2A3
        // and W3A2 meet it.
        const double lowest = compute_costs(g, s.lowest(g)).relative_bitops();
        s.constraints.max_relative_bitops = lowest * 1.5;

        PolicyContext plain = context_for(g, s, 5);
        plain.params = ParamValues({{"fit_budget", false}});
        int plain_meeting = 0;
        for (const BitPolicy& p : make_policy("random", plain)->propose(100).candidates)
            plain_meeting += meets_cost_constraints(s.constraints, compute_costs(g, p));
        CHECK(plain_meeting < 25);

        std::set<std::string> distinct;
        for (const BitPolicy& p : make_policy("random", context_for(g, s, 5))->propose(100).candidates) {
            CHECK(s.violation(g, p) == "");
            CHECK(meets_cost_constraints(s.constraints, compute_costs(g, p)));
            distinct.insert(p.to_string());
        }
        // Lowered to the boundary, not all the way down to the one lowest policy.
        CHECK(distinct.size() > (gran == Granularity::network ? 1u : 10u));
    }
}

TEST_CASE("policies: random fit_budget prunes kernels into a MACs budget and leaves met ones alone") {
    const Graph g = three_layer_model();
    SearchSpace s = small_space(Granularity::kernel);
    s.allow_pruning = true;
    const int64_t macs = compute_costs(g, s.highest(g)).macs;
    s.constraints.max_macs = macs * 7 / 10;
    for (const BitPolicy& p : make_policy("random", context_for(g, s, 9))->propose(50).candidates) {
        CHECK(s.violation(g, p) == "");
        CHECK(compute_costs(g, p).flops / 2 <= macs * 7 / 10);
    }

    // A budget every candidate meets: fitting changes nothing.
    s.constraints.max_macs = macs;
    PolicyContext plain = context_for(g, s, 9);
    plain.params = ParamValues({{"fit_budget", false}});
    CHECK(make_policy("random", plain)->propose(30).candidates ==
          make_policy("random", context_for(g, s, 9))->propose(30).candidates);
}
