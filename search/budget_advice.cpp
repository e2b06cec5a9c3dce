#include "search/budget_advice.h"


#include <cstdio>
#include <vector>

namespace mps {

namespace {

std::string percent(double share) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f %%", 100.0 * share);
    return text;
}

// The pinned layers' part of one cost measure, and each pin's own part, of `limit`.
struct PinCost {
    double total = 0.0;
    std::string by_layer; // "conv1 W8A8 31.2 %, fc W8A8 13.9 %"
};

template <typename LayerCost>
PinCost pin_cost(const RunConfig& config, const Costs& costs, double limit, LayerCost cost) {
    PinCost out;
    for (const LayerCosts& layer : costs.layers) {
        auto pin = config.space.pinned.find(layer.name);
        if (pin == config.space.pinned.end()) continue;
        const double share = cost(layer) / limit;
        out.total += share;
        out.by_layer += (out.by_layer.empty() ? "" : ", ") + layer.name + " " +
                        uniform_bits_name(pin->second) + " " + percent(share);
    }
    return out;
}

// Does `baseline` cost no more than `chosen` on every constrained measure?
bool costs_no_more(const Constraints& limits, const Costs& baseline, const Costs& chosen) {
    const bool any = limits.has_cost_constraint();
    if ((limits.max_relative_bitops || !any) &&
        baseline.relative_bitops() > chosen.relative_bitops())
        return false;
    if (limits.max_weight_bytes && baseline.weight_bytes() > chosen.weight_bytes()) return false;
    if (limits.max_macs && baseline.flops > chosen.flops) return false;
    return true;
}

} // namespace

std::string pin_share_note(const RunConfig& config) {
    const Constraints& limits = config.space.constraints;
    if (config.space.pinned.empty()) return "";
    const Costs costs = compute_costs(config.graph, config.space.lowest(config.graph));
    std::vector<std::pair<std::string, PinCost>> shares;
    if (limits.max_relative_bitops)
        shares.emplace_back("BitOPs", pin_cost(config, costs,
                                               *limits.max_relative_bitops * costs.fp32_bitops,
                                               [](const LayerCosts& l) { return double(l.bitops); }));
    if (limits.max_weight_bytes)
        shares.emplace_back("weight bytes",
                            pin_cost(config, costs, *limits.max_weight_bytes,
                                     [](const LayerCosts& l) { return l.weight_bits / 8.0; }));
    std::string note;
    bool large = false;
    for (const auto& [measure, cost] : shares) {
        note += (note.empty() ? "" : "; ") + std::string("the pinned layers take ") +
                percent(cost.total) + " of the " + measure + " budget (" + cost.by_layer + ")";
        large |= cost.total > large_pin_share;
    }
    if (large)
        note = "warning: " + note + "; the rest of the network must fit in what is left: pin "
                                    "fewer layers or pin them lower if the chosen policy disappoints";
    return note;
}

std::string losing_baseline_note(const RunResult& result) {
    if (!result.chosen || !result.chosen_test || !result.config) return "";
    const Costs& chosen = result.records[*result.chosen].evaluation.score.costs;
    const double chosen_test = result.chosen_test->accuracy_percent;
    const BaselineResult* best = nullptr;
    for (const BaselineResult& b : result.baselines)
        if (costs_no_more(result.config->space.constraints, b.validation.costs, chosen) &&
            b.test.accuracy_percent > chosen_test &&
            (!best || b.test.accuracy_percent > best->test.accuracy_percent))
            best = &b;
    if (!best) return "";
    char text[200];
    std::snprintf(text, sizeof text,
                  "warning: the chosen policy scores %.2f %% test, below uniform %s (%.2f %%), "
                  "which costs no more; ",
                  chosen_test, uniform_bits_name(best->bits).c_str(), best->test.accuracy_percent);
    const std::string pins = pin_share_note(*result.config);
    const std::string cause =
        pins.rfind("warning: ", 0) == 0
            ? "likely cause: " + pins.substr(9, pins.find(';') - 9)
            : "likely causes: too few evaluations (" + std::to_string(result.records.size()) +
                  ", stopped by " + result.stop_reason +
                  "), or validation images too few to rank close policies";
    return text + cause;
}

} // namespace mps
