// The search space's rules (search_space.h) and the pick among scored points.
#include "policies/search_space.h"

#include "evaluator/base/error.h"

#include <algorithm>

namespace mps {

namespace {

std::string bits_list(const std::vector<int>& bits) {
    std::string text;
    for (int b : bits) text += (text.empty() ? "" : ", ") + std::to_string(b);
    return text;
}

bool contains(const std::vector<int>& bits, int b) {
    return std::find(bits.begin(), bits.end(), b) != bits.end();
}

// One (weight, activation) pair per quantizable layer: the pins, `unpinned` everywhere else.
BitPolicy with_pins(const SearchSpace& space, const Graph& graph, UniformBits unpinned) {
    std::vector<UniformBits> bits;
    for (const Node* layer : quantizable_layers(graph)) {
        const auto pin = space.pinned.find(layer->name);
        bits.push_back(pin != space.pinned.end() ? pin->second : unpinned);
    }
    return BitPolicy::per_layer(graph, bits);
}

void require_bits(const SearchSpace& space) {
    if (space.weight_bits.empty() || space.activation_bits.empty())
        throw Error("search space has no allowed " +
                    std::string(space.weight_bits.empty() ? "weight" : "activation") +
                    " bit-widths; list at least one under `bits`");
}

// The weight bits of a layer whose kernels share them (-1 for a layer without kernels).
int layer_weight_bits(const LayerBits& layer) {
    return layer.weight_bits.empty() ? -1 : layer.weight_bits.front();
}

// The rule a layer that is not pinned breaks, or empty.
std::string layer_violation(const SearchSpace& space, const LayerBits& layer,
                            const std::vector<int>& kernel_bits) {
    const std::string where = "layer '" + layer.name + "'";
    if (!contains(space.activation_bits, layer.activation_bits))
        return where + ": activation bits " + std::to_string(layer.activation_bits) +
               " are not allowed; use one of " + bits_list(space.activation_bits);
    for (size_t k = 0; k < layer.weight_bits.size(); ++k)
        if (!contains(kernel_bits, layer.weight_bits[k]))
            return where + " kernel " + std::to_string(k) + ": weight bits " +
                   std::to_string(layer.weight_bits[k]) + " are not allowed; use one of " +
                   bits_list(kernel_bits);
    if (space.granularity != Granularity::kernel && !layer.uniform_weights())
        return where + ": kernels have different weight bits, but the granularity is " +
               granularity_name(space.granularity) + "; give every kernel the same bits";
    if (!layer.weight_bits.empty() &&
        std::all_of(layer.weight_bits.begin(), layer.weight_bits.end(),
                    [](int b) { return b == 0; }))
        return where + ": every kernel is pruned, which cuts the network; keep at least one";
    return {};
}

} // namespace

const char* granularity_name(Granularity g) {
    switch (g) {
    case Granularity::network: return "network";
    case Granularity::layer: return "layer";
    case Granularity::kernel: return "kernel";
    }
    return "?";
}

Granularity parse_granularity(const std::string& name) {
    for (Granularity g : {Granularity::network, Granularity::layer, Granularity::kernel})
        if (name == granularity_name(g)) return g;
    throw Error("unknown granularity '" + name + "'; use network, layer or kernel");
}

const char* objective_name(Objective o) {
    switch (o) {
    case Objective::accuracy: return "accuracy";
    case Objective::relative_bitops: return "relative_bitops";
    case Objective::weight_bytes: return "weight_bytes";
    }
    return "?";
}

Objective parse_objective(const std::string& name) {
    for (Objective o : {Objective::accuracy, Objective::relative_bitops, Objective::weight_bytes})
        if (name == objective_name(o)) return o;
    throw Error("unknown objective '" + name + "'; use accuracy, relative_bitops or weight_bytes");
}

std::optional<int> next_lower_bits(const std::vector<int>& allowed, int bits) {
    const auto it = std::find(allowed.begin(), allowed.end(), bits);
    if (it == allowed.end() || it + 1 == allowed.end()) return std::nullopt;
    return *(it + 1);
}

std::optional<int> next_higher_bits(const std::vector<int>& allowed, int bits) {
    const auto it = std::find(allowed.begin(), allowed.end(), bits);
    if (it == allowed.end() || it == allowed.begin()) return std::nullopt;
    return *(it - 1);
}

bool meets_cost_constraints(const Constraints& constraints, const Costs& costs) {
    if (constraints.max_relative_bitops && costs.relative_bitops() > *constraints.max_relative_bitops)
        return false;
    if (constraints.max_weight_bytes && costs.weight_bytes() > *constraints.max_weight_bytes)
        return false;
    if (constraints.max_macs && costs.flops / 2 > *constraints.max_macs) return false;
    return true;
}

BitPolicy SearchSpace::highest(const Graph& graph) const {
    require_bits(*this);
    return with_pins(*this, graph, {weight_bits.front(), activation_bits.front()});
}

BitPolicy SearchSpace::lowest(const Graph& graph) const {
    require_bits(*this);
    return with_pins(*this, graph, {weight_bits.back(), activation_bits.back()});
}

std::vector<int> SearchSpace::kernel_weight_bits() const {
    std::vector<int> bits = weight_bits;
    if (allow_pruning && granularity == Granularity::kernel) bits.push_back(0);
    return bits;
}

std::string SearchSpace::violation(const Graph& graph, const BitPolicy& policy) const {
    try {
        policy.validate(graph);
    } catch (const Error& e) {
        return e.what();
    }
    const std::vector<int> kernel_bits = kernel_weight_bits();
    const LayerBits* first_unpinned = nullptr;
    for (const LayerBits& layer : policy.layers) {
        const auto pin = pinned.find(layer.name);
        if (pin != pinned.end()) {
            const UniformBits bits = pin->second;
            const bool exact = layer.activation_bits == bits.activation_bits &&
                               std::all_of(layer.weight_bits.begin(), layer.weight_bits.end(),
                                           [&](int b) { return b == bits.weight_bits; });
            if (!exact)
                return "layer '" + layer.name + "' is pinned to " + uniform_bits_name(bits) +
                       " but the policy gives it other bits; keep pinned layers at their pins";
            continue;
        }
        if (std::string broken = layer_violation(*this, layer, kernel_bits); !broken.empty())
            return broken;
        if (granularity != Granularity::network) continue;
        if (!first_unpinned) {
            first_unpinned = &layer;
        } else if (layer.activation_bits != first_unpinned->activation_bits ||
                   layer_weight_bits(layer) != layer_weight_bits(*first_unpinned)) {
            return "layer '" + layer.name + "' has other bits than layer '" +
                   first_unpinned->name +
                   "', but the granularity is network; give every unpinned layer the same bits";
        }
    }
    return {};
}

std::optional<size_t> pick(std::span<const Evaluation> points, const Constraints& constraints,
                           Objective objective, double reference_accuracy) {
    // Accuracies are ratios of image counts times 100 and the floor is a difference of two
    // decimals, so a point exactly at the limit may miss it by a rounding error; it counts.
    constexpr double accuracy_tolerance = 1e-9;
    const auto feasible = [&](const Score& s) {
        if (!meets_cost_constraints(constraints, s.costs)) return false;
        return !constraints.max_accuracy_drop ||
               s.accuracy_percent >=
                   reference_accuracy - *constraints.max_accuracy_drop - accuracy_tolerance;
    };
    // The cost the objective minimizes (none for accuracy).
    const auto cost = [&](const Score& s) {
        switch (objective) {
        case Objective::accuracy: return 0.0;
        case Objective::relative_bitops: return s.costs.relative_bitops();
        case Objective::weight_bytes: return s.costs.weight_bytes();
        }
        return 0.0;
    };
    std::optional<size_t> best;
    for (size_t i = 0; i < points.size(); ++i) {
        const Score& s = points[i].score;
        if (!feasible(s)) continue;
        if (!best) {
            best = i;
            continue;
        }
        const Score& b = points[*best].score;
        // Strictly better only, so that ties keep the earliest point.
        const bool better = cost(s) < cost(b) ||
                            (cost(s) == cost(b) && s.accuracy_percent > b.accuracy_percent);
        if (better) best = i;
    }
    return best;
}

} // namespace mps
