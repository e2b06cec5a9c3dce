// Budget advice (search/budget_advice.h): the pinned layers' share of a BitOPs limit equals the
// hand-computed ratio of their BitOPs to the limit, is a warning above 25 %, and a chosen policy
// below a uniform baseline that costs no more is named with its cause.
#include "evaluator/ir/costs.h"
#include "search/budget_advice.h"
#include "search/run_config.h"

#include <doctest/doctest.h>

#include <cstdio>
#include <string>

using namespace mps;

namespace {

const std::string mobilenet = std::string(MPSEARCH_SOURCE_DIR) + "/models/mobilenet_tiny.onnx";

RunConfig config_with(const std::string& pins) {
    return parse_run_config("model: " + mobilenet + "\n"
                            "pinned: " + pins + "\n"
                            "constraints: {max_relative_bitops: W4A4}\n"
                            "policy: {name: uniform}\n",
                            "run.yaml");
}

// conv1 at W8A8 against uniform W4A4's BitOPs, from the cost model directly.
double conv1_share(const RunConfig& config) {
    const Costs w8 = compute_costs(config.graph, BitPolicy::uniform(config.graph, 8, 8));
    const Costs w4 = compute_costs(config.graph, BitPolicy::uniform(config.graph, 4, 4));
    for (const LayerCosts& layer : w8.layers)
        if (layer.name == "conv1") return double(layer.bitops) / double(w4.bitops);
    FAIL("no conv1");
    return 0;
}

} // namespace

TEST_CASE("budget advice: the pins' share of the BitOPs budget, a warning when large") {
    CHECK(pin_share_note(config_with("{}")).empty());
    const RunConfig pinned = config_with("{first: W8A8}");
    const std::string note = pin_share_note(pinned);
    char want[64];
    std::snprintf(want, sizeof want, "conv1 W8A8 %.1f %%", 100.0 * conv1_share(pinned));
    CHECK(note.find(want) != std::string::npos);
    CHECK(conv1_share(pinned) > 0.25);
    CHECK(note.rfind("warning: ", 0) == 0);
    const std::string small = pin_share_note(config_with("{last: W8A8}"));
    CHECK(small.find("of the BitOPs budget") != std::string::npos);
    CHECK(small.rfind("warning", 0) == std::string::npos);
}

TEST_CASE("budget advice: a chosen policy below a uniform baseline that costs no more") {
    const RunConfig config = config_with("{first: W8A8}");
    RunResult result;
    result.config = &config;
    result.stop_reason = "max_evaluations reached";
    ArchiveRecord chosen;
    chosen.evaluation.policy = BitPolicy::uniform(config.graph, 4, 4);
    chosen.evaluation.score.costs = compute_costs(config.graph, chosen.evaluation.policy);
    result.records = {chosen};
    result.chosen = 0;
    result.chosen_test = Score{};
    result.chosen_test->accuracy_percent = 60.0;
    BaselineResult w4{{4, 4}, BitPolicy::uniform(config.graph, 4, 4), {}, {}};
    w4.validation.costs = compute_costs(config.graph, w4.policy);
    w4.test.accuracy_percent = 70.0;
    BaselineResult w8{{8, 8}, BitPolicy::uniform(config.graph, 8, 8), {}, {}};
    w8.validation.costs = compute_costs(config.graph, w8.policy);
    w8.test.accuracy_percent = 90.0; // better, but costs more: not named
    result.baselines = {w8, w4};
    const std::string note = losing_baseline_note(result);
    CHECK(note.find("60.00 % test, below uniform W4A4 (70.00 %)") != std::string::npos);
    CHECK(note.find("likely cause: the pinned layers take") != std::string::npos);
    result.baselines[1].test.accuracy_percent = 59.0;
    CHECK(losing_baseline_note(result).empty());
}
