#pragma once
// SearchSpace: what a search may propose for one model, and the constraints a chosen policy must
// meet (the run config's `granularity`, `bits`, `pinned` and `constraints` keys, resolved against
// the graph). Value type; policies read it, the run loop and the report use the same rules.
//
// Rules (docs/config.md states them for users):
//   - granularity network: every unpinned layer has the same activation bits and every kernel of
//     every unpinned layer the same weight bits; layer: the kernels of a layer share one weight
//     bit-width; kernel: each kernel has its own (the only granularity where pruning single
//     kernels is possible).
//   - allowed weight bits: `weight_bits`, plus 0 for single kernels when `allow_pruning` and the
//     granularity is kernel (a whole layer is never pruned: it would cut the network);
//     allowed activation bits: `activation_bits`. Both lists are descending and distinct.
//   - a pinned layer has exactly its pinned bits (all kernels), whatever the granularity.
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/costs.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/score.h"

#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

namespace mps {

enum class Granularity { network, layer, kernel };
const char* granularity_name(Granularity g);          // "network", "layer", "kernel"
Granularity parse_granularity(const std::string& name); // mps::Error on anything else

struct Constraints {
    std::optional<double> max_relative_bitops;  // BitOPs / FP32 BitOPs
    std::optional<double> max_weight_bytes;     // bytes (Costs::weight_bytes)
    std::optional<int64_t> max_macs;            // MACs per image of the unpruned kernels (flops / 2)
    std::optional<double> max_accuracy_drop;    // points below the FP32 validation accuracy

    bool has_cost_constraint() const {
        return max_relative_bitops || max_weight_bytes || max_macs;
    }
    bool operator==(const Constraints&) const = default;
};

// True when `costs` meets every cost constraint (the accuracy constraint is not looked at).
bool meets_cost_constraints(const Constraints& constraints, const Costs& costs);

struct SearchSpace {
    Granularity granularity = Granularity::kernel;
    std::vector<int> weight_bits{8, 6, 4, 3, 2};     // descending, distinct, each 1..8/16/32
    std::vector<int> activation_bits{8, 6, 4, 3, 2}; // descending, distinct, each 1..8/16/32
    bool allow_pruning = false;
    std::map<std::string, UniformBits> pinned;       // node name -> its fixed bits
    Constraints constraints;

    bool is_pinned(const std::string& layer) const { return pinned.count(layer) > 0; }
    // Every unpinned layer at the highest allowed bits, pinned layers at their pins.
    BitPolicy highest(const Graph& graph) const;
    // Every unpinned layer at the lowest allowed bits (never 0), pinned layers at their pins.
    BitPolicy lowest(const Graph& graph) const;
    // Weight bit-widths one kernel may take: weight_bits, plus 0 when pruning single kernels is
    // allowed (kernel granularity), descending.
    std::vector<int> kernel_weight_bits() const;
    // Empty when `policy` lies in the space (valid for the graph, allowed bits, pins, granularity);
    // otherwise the first rule it breaks, naming the layer.
    std::string violation(const Graph& graph, const BitPolicy& policy) const;
};

// One step along a descending list of allowed bit-widths (SearchSpace::weight_bits,
// activation_bits or kernel_weight_bits()): the entry after `bits` (next_lower_bits) or before
// it (next_higher_bits); nullopt when `bits` is at that end of the list or not in it.
std::optional<int> next_lower_bits(const std::vector<int>& allowed, int bits);
std::optional<int> next_higher_bits(const std::vector<int>& allowed, int bits);

// What a policy scored, as the run loop hands it back.
struct Evaluation {
    BitPolicy policy;
    Score score; // on the validation split (evaluator/ir/score.h)
};

// What the run (and a policy that refines a chosen point) optimizes once constraints hold.
//   accuracy          highest validation accuracy among the points that meet every constraint
//   relative_bitops   lowest BitOPs among them (ties: higher accuracy)
//   weight_bytes      lowest weight bytes among them (ties: higher accuracy)
enum class Objective { accuracy, relative_bitops, weight_bytes };
const char* objective_name(Objective o);
Objective parse_objective(const std::string& name); // mps::Error on anything else

// The index of the pick among `points` (a point meets the constraints when its costs meet every
// cost constraint and its accuracy is at least reference_accuracy - max_accuracy_drop), or
// nullopt when none meets them. Remaining ties go to the earliest point, so the pick is a pure
// function of the sequence.
std::optional<size_t> pick(std::span<const Evaluation> points, const Constraints& constraints,
                           Objective objective, double reference_accuracy);

} // namespace mps
