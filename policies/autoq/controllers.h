#pragma once
// The pieces of AutoQ (docs/policies.md, "autoq") below the policy: the action <-> bit-width maps,
// the rewards, and the low-level controller (LLC) that walks one layer's kernels towards the
// goal its high-level controller set, with HIRO's goal relabelling.
//
// Actions are in [0, 1]. A discrete choice (activation bits, a kernel's bits) maps the action
// linearly onto [min - 0.5, max + 0.5] of its allowed set and takes the nearest allowed value
// (ties: the higher one). A goal (a layer's mean weight bit-width) is continuous: the same
// linear map, clamped to [min, max], so that an action means the same bits as a goal and as a
// kernel's choice.
#include "evaluator/ir/score.h"
#include "policies/autoq/ddpg.h"

#include <cstdint>
#include <functional>
#include <span>
#include <vector>

namespace mps::autoq {

// --- Actions and bits ------------------------------------------------------------------------

// `allowed`: distinct bit-widths in any order, not empty.
int nearest_allowed(double bits, std::span<const int> allowed);
int action_to_bits(double action, std::span<const int> allowed);
double goal_bits(double action, std::span<const int> allowed);
// The action whose goal is `bits` (clamped to [min, max]); goal_bits(goal_action(b)) == b.
double goal_action(double bits, std::span<const int> allowed);

// --- Rewards ---------------------------------------------------------------------------------

enum class Mode { resource_constrained, accuracy_guaranteed };
Mode parse_mode(const std::string& name); // mps::Error on anything else

struct RewardWeights {
    double accuracy = 2.0; // psi_acc
    double bitops = 1.0;   // psi_bitops
    double memory = 0.0;   // psi_mem
};

// resource_constrained: (acc - acc_fp32) * 0.1, accuracies in percent;
// accuracy_guaranteed: psi_acc log(acc / 100) - psi_bitops log(relative BitOPs)
//                      - psi_mem log(relative weight bytes).
// Logarithms of values below 1e-6 take 1e-6 (a 0 % accuracy stays a finite, very bad reward).
double extrinsic_reward(Mode mode, const RewardWeights& weights, const Score& score,
                        double fp32_accuracy);
// The LLC's reward at a layer's last kernel: -|mean bits - goal| / max_bits.
double intrinsic_reward(double mean_bits, double goal, int max_bits);

// --- Low-level controller --------------------------------------------------------------------

// One kernel as the LLC sees it. mean, std and max_abs are min-max normalized over the kernels of
// its layer; error[i] is ||w - Q(w)||^2 / ||w||^2 at weight_bits[i] (0 for an all-zero kernel).
struct KernelFeatures {
    float mean = 0, std = 0, max_abs = 0;
    std::vector<float> error;
};

struct LayerView {
    std::vector<float> state; // the HLC's layer state
    std::vector<KernelFeatures> kernels;
};

// How actions are drawn: the actor's, uniform random (warm-up), or the actor's with
// truncated-normal noise of `sigma` (truncated to [0, 1]).
struct Exploration {
    enum class Kind { greedy, uniform, noise };
    Kind kind = Kind::greedy;
    double sigma = 0.0;
};

double explore(double action, const Exploration& exploration, Draws& draws);

// What one walk over a layer did.
struct LayerWalk {
    double goal_action = 0.0;
    double goal = 0.0;                     // bits
    std::vector<std::vector<float>> states; // per kernel
    std::vector<float> actions;             // per kernel, as taken
    std::vector<int> bits;                  // per kernel, the achieved bits
    double mean_bits() const;
};

class LowLevelController {
public:
    // `kernel_bits`: what a kernel may take (0 = pruned allowed); `weight_bits`: the nonzero
    // bit-widths the KernelFeatures::error tables index. `config.state_dim` is ignored (the LLC
    // sets it from `layer_state_dim`), action_dim is 1.
    LowLevelController(DdpgConfig config, int64_t layer_state_dim, std::vector<int> kernel_bits,
                       std::vector<int> weight_bits);

    static int64_t state_dim(int64_t layer_state_dim) { return layer_state_dim + 7; }

    // Walks the kernels in order. When every kernel came out pruned, the one with the largest
    // max |w| gets the lowest nonzero bits back (a layer is never cut).
    LayerWalk walk(const LayerView& layer, double goal_action, const Exploration& exploration,
                   Draws& draws);
    // The states the walk `bits` would have seen under another goal (HIRO relabelling).
    std::vector<std::vector<float>> states_for(const LayerView& layer, double goal_action,
                                               std::span<const int> bits) const;
    // Stores the walk's transitions: reward intrinsic_reward at the last kernel, plus `shaping`
    // on every kernel (eta times the extrinsic reward); the layer's last kernel is terminal.
    void remember(const LayerWalk& walk, double shaping);
    // HIRO: among `candidates` (goal actions), the one under which the current LLC reproduces the
    // walk's actions best (least sum of squared differences; ties: the earliest).
    double relabel(const LayerView& layer, const LayerWalk& walk,
                   std::span<const double> candidates);

    DdpgAgent& agent() { return agent_; }
    const std::vector<int>& kernel_bits() const { return kernel_bits_; }

private:
    std::vector<float> kernel_state(const LayerView& layer, double goal_action, size_t k,
                                    double running_mean) const;
    double goal_action_of(double bits) const;

    std::vector<int> kernel_bits_, weight_bits_;
    int max_bits_;
    DdpgAgent agent_;
};

// Index of the candidate whose actions (llc(candidate)) are nearest to `taken` in squared
// distance; ties: the earliest.
size_t best_explaining(std::span<const double> candidates, std::span<const float> taken,
                       const std::function<std::vector<float>(double)>& llc);

} // namespace mps::autoq
