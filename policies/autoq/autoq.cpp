// Policy `autoq` (docs/policies.md, "autoq"): hierarchical reinforcement learning of kernel-wise
// weight bit-widths (and pruning) and per-layer activation bit-widths, after AutoQ (Lou et al.,
// ICLR 2020) with HIRO's goals and off-policy correction and HAQ's DDPG settings.
//
// An episode walks the unpinned quantizable layers in graph order. The high-level controller
// (HLC, a DDPG agent with two actions) sees the layer state and picks the layer's activation
// bits and a goal, its mean weight bits; the low-level controller (LLC, policies/autoq/
// controllers.h) walks the layer's kernels and picks each kernel's bits. The episode's policy is
// projected onto the budget when the space has a cost constraint and proposed; its validation
// score gives the extrinsic reward.
//
// Decisions of ours, where the paper is silent or differs (docs/policies.md, "autoq"):
//   - rounds: episodes are rolled out `episodes_per_batch` at a time with the same actors (warm-up
//     episodes in rounds of their own, so a round never spans the end of the warm-up); a round is
//     handed to the run loop in chunks of at most `limit`, and the agents learn only when the
//     whole round is scored. So the episodes do not depend on `limit` (a resumed run replays
//     exactly); with the run's `batch` >= episodes_per_batch a round is one evaluate call.
//   - granularity layer: the LLC gives every kernel the goal rounded to the nearest allowed
//     weight bits (layer-wise AutoQ; no LLC agent is trained). granularity network: an episode is
//     one HLC step on the first unpinned layer's state; its two actions set every unpinned layer.
//   - goal range: the kernel's allowed bits (with 0 when pruning is allowed), the same linear map
//     as the discrete choices but clamped to [min, max] instead of rounded.
//   - layer state (16 values): layer index, c_in, c_out, kernel height x width, stride, input
//     height, #weights, MACs, max |w|, std(w), min-max normalized over the quantizable layers;
//     one-hot type (conv, depthwise, fc); the previous unpinned layer's two actions (1, 1 at the
//     first); the remaining budget fraction: (budget - cost of the layers decided so far, pinned
//     layers included) / budget on the first constrained axis (BitOPs, weight bits, FLOPs =
//     2 MACs), clamped to [0, 1]; without a cost constraint the budget is the BitOPs of the
//     highest policy.
//   - kernel state: the layer state, the goal action, k / K, the kernel's mean, std and max |w|
//     (min-max normalized within the layer), its relative quantization error ||w - Q(w)||^2 /
//     ||w||^2 at the allowed weight bits nearest the goal (the run's weight quantizer), and the
//     running mean of the bits chosen so far in the layer on the goal's scale (goal_action of it;
//     the goal itself before the first kernel), so that the LLC compares two like inputs.
//   - rewards: every HLC step gets the extrinsic reward R; LLC steps get the intrinsic reward
//     (at the layer's last kernel) plus eta * R on every kernel. The HLC's episode ends at the
//     last layer, the LLC's at each layer's last kernel (one goal period, as in HIRO).
//   - learning (HAQ): after a round, for each of its episodes past the warm-up, the LLC does
//     `llc_updates` minibatch updates and the HLC one per HLC step; the replay buffers keep the
//     transitions of the last `replay_size` episodes. The moving-average baseline is HAQ's:
//     updated with each minibatch's mean reward (alpha 0.5) and subtracted from the rewards.
//   - exploration: warm-up episodes draw every action uniformly; later ones add truncated-normal
//     noise (in [0, 1]) of sigma * sigma_decay^(episode - warmup_episodes) to the actors' actions.
//   - HIRO relabelling: when a round is learnt (after the LLC's updates), each HLC transition's
//     goal is replaced by the candidate under which the current LLC reproduces the LLC's taken
//     actions best; candidates: the original goal, the goal equal to the achieved mean bits and
//     8 draws around the latter (truncated normal, sigma 0.1). Warm-up episodes, whose LLC
//     actions were random, take the achieved goal. Transitions are relabelled once, when stored,
//     not at every sampling (cheaper; the LLC moves little between rounds).
//   - projection (only with a cost constraint): while a constraint is exceeded, on the axis of
//     the first exceeded one (BitOPs, weight bytes, MACs), lower by one allowed step the kernel
//     (layer granularity: the layer; network: every unpinned layer) with the smallest increase
//     of relative quantization error (pruning: 1 - error) per unit of cost saved; ties: the
//     earlier layer and kernel. Only when no weight step saves anything there, lower the
//     activation bits of the layer that saves the most. The LLC's transitions keep the actions
//     it took; the reward is the projected policy's.
//   - accuracy_guaranteed: accuracies are in percent; logs of values below 1e-6 take 1e-6.
//
// Deterministic: one seeded std::mt19937_64 per purpose (rollouts, each agent, relabelling) with
// our own conversions, agents on one thread (ddpg.h); the same context and scores give the same
// proposals.
//
// Cost of the policy itself: 300 episodes on the zoo's resnet8 (10 layers, 346 kernels, kernel
// granularity with pruning, a BitOPs budget, defaults) take 66 s on the 2-core reference machine
// under a load of ~6 (46 s of CPU), ~220 ms per episode, most of it the 74 minibatch updates.
#include "policies/autoq/controllers.h"
#include "policies/autoq/ddpg.h"
#include "policies/policy.h"

#include "evaluator/base/error.h"
#include "evaluator/ir/costs.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

namespace mps {

namespace {

using autoq::DdpgAgent;
using autoq::DdpgConfig;
using autoq::Draws;
using autoq::Exploration;
using autoq::KernelFeatures;
using autoq::LayerView;
using autoq::LayerWalk;
using autoq::LowLevelController;
using autoq::Transition;

constexpr size_t description_size = 13; // normalized layer description (see the header)
constexpr int64_t layer_state_size = description_size + 3;
constexpr size_t relabel_samples = 8;
constexpr double relabel_sigma = 0.1;

enum class Axis { bitops, weight_bits, flops };

// One kernel's share of a cost axis (kernel_costs in evaluator/ir/costs.h; biases apart).
int64_t kernel_cost(Axis axis, const KernelShape& s, int weight_bits, int activation_bits) {
    const KernelCosts share = kernel_costs(s, weight_bits, activation_bits);
    switch (axis) {
    case Axis::bitops: return share.bitops;
    case Axis::weight_bits: return share.weight_bits;
    case Axis::flops: return 2 * share.unpruned_macs;
    }
    return 0;
}

// The first constraint `costs` exceeds, in meets_cost_constraints' order.
std::optional<Axis> exceeded(const Constraints& c, const Costs& costs) {
    if (c.max_relative_bitops && costs.relative_bitops() > *c.max_relative_bitops)
        return Axis::bitops;
    if (c.max_weight_bytes && costs.weight_bytes() > *c.max_weight_bytes) return Axis::weight_bits;
    if (c.max_macs && costs.flops / 2 > *c.max_macs) return Axis::flops;
    return std::nullopt;
}

// How far `costs` is over the constraint on `axis`, in that axis' units; at least 1, so that the
// projection lowers something on every pass. It spends this on running totals of the savings.
int64_t excess_on(Axis axis, const Constraints& c, const Costs& costs) {
    int64_t excess = 0;
    if (axis == Axis::bitops)
        excess = costs.bitops -
                 static_cast<int64_t>(std::floor(*c.max_relative_bitops *
                                                 static_cast<double>(costs.fp32_bitops)));
    else if (axis == Axis::weight_bits)
        excess = costs.weight_bits - static_cast<int64_t>(std::floor(*c.max_weight_bytes * 8.0));
    else
        excess = costs.flops - 2 * *c.max_macs;
    return std::max<int64_t>(excess, 1);
}

// What the projection lowers by one weight step at a time: one kernel of a layer (kernel
// granularity; `kernel` set), every kernel of one layer (layer) or of every unpinned layer
// (network), so that the projected policy stays of the space's granularity.
struct ProjectionUnit {
    std::vector<size_t> layers;
    std::optional<size_t> kernel;
};

// The kernels [first, end) of a layer with `kernels` kernels that `unit` moves.
std::pair<size_t, size_t> unit_kernels(const ProjectionUnit& unit, size_t kernels) {
    return unit.kernel ? std::pair{*unit.kernel, *unit.kernel + 1} : std::pair{size_t{0}, kernels};
}

// What lowering a unit by one step would cost in quantization error and save on the axis.
struct WeightStep {
    double sensitivity = 0.0; // summed increase of relative error (may be negative)
    int64_t saving = 0;
};

// Min-max normalizes `values` in place (all 0 when they are equal).
void min_max(std::vector<float*> values) {
    if (values.empty()) return;
    float lo = *values[0], hi = *values[0];
    for (const float* v : values) {
        lo = std::min(lo, *v);
        hi = std::max(hi, *v);
    }
    for (float* v : values) *v = hi > lo ? (*v - lo) / (hi - lo) : 0.0f;
}

// ||w - Q(w)||^2 / ||w||^2 (at most 1) of kernel `w`, whose ||w||^2 is `s2`, under `quantizer` at
// each of `weight_bits`; 0 where nothing is lost (32 bits) or there is nothing to lose. `quantized`
// is scratch of w.size() values.
std::vector<float> relative_errors(std::span<const float> w, double s2,
                                   const std::vector<int>& weight_bits,
                                   const WeightQuantizer& quantizer,
                                   std::vector<float>& quantized) {
    const size_t size = w.size();
    std::vector<float> errors;
    for (int bits : weight_bits) {
        if (bits >= 32 || size == 0 || s2 == 0.0) {
            errors.push_back(0.0f);
            continue;
        }
        quantizer.quantize_kernel(w, bits, quantized);
        double e = 0.0;
        for (size_t i = 0; i < size; ++i) {
            const double d = static_cast<double>(w[i]) - quantized[i];
            e += d * d;
        }
        errors.push_back(static_cast<float>(std::min(1.0, e / s2)));
    }
    return errors;
}

// One HLC step of an episode.
struct Step {
    size_t layer = 0; // the layer whose state it saw
    std::vector<float> state;
    double activation_action = 0.0, goal_action = 0.0;
    std::optional<LayerWalk> walk; // kernel granularity
};

struct Episode {
    int64_t index = 0;
    std::vector<Step> steps;
    BitPolicy policy;
    std::optional<Score> score;
};

class AutoqPolicy final : public SearchPolicy {
public:
    explicit AutoqPolicy(const PolicyContext& context);

    Proposal propose(int64_t limit) override;
    void observe(std::span<const Evaluation> scored) override;
    std::vector<double> rewards() const override;
    std::string status() const override;

private:
    void describe_layers(const WeightQuantizer& quantizer);
    std::vector<float> layer_description(size_t layer) const;
    std::vector<KernelFeatures> kernel_features(const Node& n, size_t kernels, size_t size,
                                                const WeightQuantizer& quantizer) const;
    void set_budget_axis();
    void start_round();
    Episode rollout(int64_t index);
    Exploration exploration(int64_t index) const;
    std::vector<float> layer_state(size_t layer, double previous_activation,
                                   double previous_goal, int64_t spent) const;
    int64_t layer_cost(Axis axis, const LayerBits& bits, size_t layer) const;
    LayerView view(size_t layer, const std::vector<float>& state) const;
    void project(BitPolicy& policy) const;
    std::vector<ProjectionUnit> projection_units() const;
    std::optional<WeightStep> weight_step(const BitPolicy& policy, const ProjectionUnit& unit,
                                          Axis axis, const std::vector<int>& allowed) const;
    bool lower_weights(BitPolicy& policy, const std::vector<ProjectionUnit>& units, Axis axis,
                       int64_t excess, const std::vector<int>& allowed) const;
    void lower_activations(BitPolicy& policy, Axis axis) const;
    double error(size_t layer, size_t kernel, int bits) const;
    void learn();
    double relabelled_goal(const Episode& episode, const Step& step);

    const Graph& graph_;
    SearchSpace space_;
    autoq::Mode mode_;
    autoq::RewardWeights weights_;
    double reference_accuracy_;
    int64_t episodes_, warmup_, episodes_per_round_, llc_updates_;
    double sigma_, sigma_decay_, eta_;
    std::vector<int> kernel_bits_;

    std::vector<const Node*> layers_;            // quantizable, graph order
    std::vector<size_t> unpinned_;
    std::vector<size_t> step_layers_;            // the layers an episode's HLC steps look at
    std::vector<std::vector<float>> descriptions_; // per layer, normalized
    std::vector<std::vector<KernelFeatures>> kernels_;
    std::vector<KernelShape> shapes_;
    BitPolicy start_;

    Axis budget_axis_ = Axis::bitops;
    double budget_ = 1.0;
    int64_t fixed_cost_ = 0; // pinned layers (and biases on the weight axis) on budget_axis_

    Draws draws_, relabel_draws_;
    std::unique_ptr<DdpgAgent> hlc_;
    std::unique_ptr<LowLevelController> llc_;

    std::vector<Episode> round_;
    size_t proposed_ = 0; // of round_
    size_t scored_ = 0;
    int64_t next_episode_ = 0;
    std::vector<double> rewards_; // per scored episode
    size_t last_observed_ = 0;    // episodes handed to the last observe()
};

DdpgConfig agent_config(const PolicyContext& c, uint64_t seed) {
    DdpgConfig d;
    d.hidden = c.params.integer("hidden");
    d.actor_lr = c.params.real("actor_lr");
    d.critic_lr = c.params.real("critic_lr");
    d.tau = c.params.real("tau");
    d.discount = c.params.real("discount");
    d.batch = c.params.integer("batch");
    d.seed = seed;
    return d;
}

// Seeds of the independent generators, far apart in the seed space.
uint64_t derived_seed(uint64_t seed, uint64_t purpose) {
    return seed * 0x9E3779B97F4A7C15ULL + purpose * 0xD1B54A32D192ED03ULL;
}

AutoqPolicy::AutoqPolicy(const PolicyContext& c)
    : graph_(*c.graph), space_(c.space), mode_(autoq::parse_mode(c.params.text("mode"))),
      weights_{c.params.real("psi_acc"), c.params.real("psi_bitops"), c.params.real("psi_mem")},
      reference_accuracy_(c.reference.accuracy_percent), episodes_(c.params.integer("episodes")),
      warmup_(c.params.integer("warmup_episodes")),
      episodes_per_round_(c.params.integer("episodes_per_batch")),
      llc_updates_(c.params.integer("llc_updates")), sigma_(c.params.real("sigma")),
      sigma_decay_(c.params.real("sigma_decay")), eta_(c.params.real("eta")),
      kernel_bits_(c.space.kernel_weight_bits()), start_(c.space.highest(*c.graph)),
      draws_(derived_seed(c.seed, 1)), relabel_draws_(derived_seed(c.seed, 2)) {
    layers_ = quantizable_layers(graph_);
    for (size_t l = 0; l < layers_.size(); ++l)
        if (!space_.is_pinned(layers_[l]->name)) unpinned_.push_back(l);
    step_layers_ = unpinned_;
    if (space_.granularity == Granularity::network && !unpinned_.empty())
        step_layers_ = {unpinned_.front()};
    const auto quantizer = make_weight_quantizer(c.weight_quantizer.name, c.weight_quantizer.args);
    describe_layers(*quantizer);
    set_budget_axis();

    const int64_t replay_episodes = c.params.integer("replay_size");
    DdpgConfig hlc = agent_config(c, derived_seed(c.seed, 3));
    hlc.state_dim = layer_state_size;
    hlc.action_dim = 2;
    hlc.replay_size = static_cast<size_t>(replay_episodes) * std::max<size_t>(1, step_layers_.size());
    hlc_ = std::make_unique<DdpgAgent>(hlc);
    if (space_.granularity == Granularity::kernel && !unpinned_.empty()) {
        size_t kernels = 0;
        for (size_t l : unpinned_) kernels += kernels_[l].size();
        DdpgConfig llc = agent_config(c, derived_seed(c.seed, 4));
        llc.replay_size = static_cast<size_t>(replay_episodes) * kernels;
        llc_ = std::make_unique<LowLevelController>(llc, layer_state_size, kernel_bits_,
                                                    space_.weight_bits);
    }
    if (step_layers_.empty()) episodes_ = 1; // every layer pinned: one policy to score
}

// Static layer descriptions, kernel features (with quantization errors) and cost shapes.
void AutoqPolicy::describe_layers(const WeightQuantizer& quantizer) {
    for (size_t l = 0; l < layers_.size(); ++l) {
        const Node& n = *layers_[l];
        const int64_t kernels = kernel_count(n);
        descriptions_.push_back(layer_description(l));
        const size_t size = static_cast<size_t>(n.weight.numel() / std::max<int64_t>(1, kernels));
        kernels_.push_back(kernel_features(n, static_cast<size_t>(kernels), size, quantizer));
        shapes_.push_back(kernel_shape(graph_, n));
    }
    // The first 10 values are min-max normalized over the layers; the one-hot type is kept.
    for (size_t column = 0; column < 10; ++column) {
        std::vector<float*> values;
        for (auto& d : descriptions_) values.push_back(&d[column]);
        min_max(values);
    }
}

// Layer `layer`'s description_size raw values (see "layer state" in the header comment), before
// describe_layers normalizes them over the layers.
std::vector<float> AutoqPolicy::layer_description(size_t layer) const {
    const Node& n = *layers_[layer];
    const bool conv = n.op == Op::conv;
    const int64_t kernels = kernel_count(n);
    const int64_t c_in = conv ? n.weight.dims[1] * n.groups : n.weight.dims[1];
    const bool depthwise = conv && n.groups > 1 && n.groups == c_in;
    const auto& in_shape = graph_.shapes.at(n.inputs[0]);
    double max_abs = 0.0, sum = 0.0, sum2 = 0.0;
    for (float w : n.weight.data) {
        max_abs = std::max(max_abs, std::abs(static_cast<double>(w)));
        sum += w;
        sum2 += static_cast<double>(w) * w;
    }
    const double count = static_cast<double>(std::max<int64_t>(1, n.weight.numel()));
    const double std_w = std::sqrt(std::max(0.0, sum2 / count - (sum / count) * (sum / count)));
    return {static_cast<float>(layer), static_cast<float>(c_in), static_cast<float>(kernels),
            static_cast<float>(conv ? n.kernel[0] * n.kernel[1] : 1),
            static_cast<float>(conv ? n.stride[0] : 0),
            static_cast<float>(in_shape.size() == 3 ? in_shape[1] : 1),
            static_cast<float>(n.weight.numel()), static_cast<float>(node_macs(graph_, n)),
            static_cast<float>(max_abs), static_cast<float>(std_w),
            conv && !depthwise ? 1.0f : 0.0f, depthwise ? 1.0f : 0.0f, conv ? 0.0f : 1.0f};
}

// The features of node `n`'s `kernels` kernels of `size` weights each: mean, std and max |w|
// min-max normalized within the layer, and the relative quantization error at each of the
// space's weight bits (KernelFeatures::error, in space_.weight_bits' order).
std::vector<KernelFeatures> AutoqPolicy::kernel_features(const Node& n, size_t kernels, size_t size,
                                                         const WeightQuantizer& quantizer) const {
    std::vector<KernelFeatures> features(kernels);
    std::vector<float> quantized(size); // scratch, reused across the layer's kernels
    for (size_t k = 0; k < features.size(); ++k) {
        const std::span<const float> w(n.weight.data.data() + k * size, size);
        double s = 0.0, s2 = 0.0, m = 0.0;
        for (float v : w) {
            s += v;
            s2 += static_cast<double>(v) * v;
            m = std::max(m, std::abs(static_cast<double>(v)));
        }
        const double mean = s / static_cast<double>(std::max<size_t>(1, size));
        KernelFeatures& f = features[k];
        f.mean = static_cast<float>(mean);
        f.std = static_cast<float>(
            std::sqrt(std::max(0.0, s2 / std::max<size_t>(1, size) - mean * mean)));
        f.max_abs = static_cast<float>(m);
        f.error = relative_errors(w, s2, space_.weight_bits, quantizer, quantized);
    }
    std::vector<float*> means, stds, maxes;
    for (KernelFeatures& f : features) {
        means.push_back(&f.mean);
        stds.push_back(&f.std);
        maxes.push_back(&f.max_abs);
    }
    min_max(means);
    min_max(stds);
    min_max(maxes);
    return features;
}

void AutoqPolicy::set_budget_axis() {
    const Constraints& c = space_.constraints;
    const Costs highest = compute_costs(graph_, start_);
    budget_axis_ = Axis::bitops;
    budget_ = static_cast<double>(highest.bitops);
    if (c.max_relative_bitops) {
        budget_ = *c.max_relative_bitops * static_cast<double>(highest.fp32_bitops);
    } else if (c.max_weight_bytes) {
        budget_axis_ = Axis::weight_bits;
        budget_ = *c.max_weight_bytes * 8.0;
    } else if (c.max_macs) {
        budget_axis_ = Axis::flops;
        budget_ = 2.0 * static_cast<double>(*c.max_macs);
    }
    budget_ = std::max(budget_, 1.0);
    for (size_t l = 0; l < layers_.size(); ++l) {
        if (space_.is_pinned(layers_[l]->name)) fixed_cost_ += layer_cost(budget_axis_, start_.layers[l], l);
        if (budget_axis_ == Axis::weight_bits) fixed_cost_ += bias_bits(*layers_[l]);
    }
}

int64_t AutoqPolicy::layer_cost(Axis axis, const LayerBits& bits, size_t layer) const {
    int64_t cost = 0;
    for (int w : bits.weight_bits) cost += kernel_cost(axis, shapes_[layer], w, bits.activation_bits);
    return cost;
}

std::vector<float> AutoqPolicy::layer_state(size_t layer, double previous_activation,
                                            double previous_goal, int64_t spent) const {
    std::vector<float> s = descriptions_[layer];
    s.push_back(static_cast<float>(previous_activation));
    s.push_back(static_cast<float>(previous_goal));
    s.push_back(static_cast<float>(std::clamp((budget_ - static_cast<double>(spent)) / budget_, 0.0, 1.0)));
    return s;
}

LayerView AutoqPolicy::view(size_t layer, const std::vector<float>& state) const {
    return {state, kernels_[layer]};
}

Exploration AutoqPolicy::exploration(int64_t index) const {
    if (index < warmup_) return {Exploration::Kind::uniform, 0.0};
    return {Exploration::Kind::noise,
            sigma_ * std::pow(sigma_decay_, static_cast<double>(index - warmup_))};
}

Episode AutoqPolicy::rollout(int64_t index) {
    Episode e;
    e.index = index;
    e.policy = start_;
    const Exploration x = exploration(index);
    double previous_activation = 1.0, previous_goal = 1.0;
    int64_t spent = fixed_cost_;
    for (size_t l : step_layers_) {
        Step step;
        step.layer = l;
        step.state = layer_state(l, previous_activation, previous_goal, spent);
        std::vector<float> greedy{0.0f, 0.0f};
        if (x.kind != Exploration::Kind::uniform) greedy = hlc_->act(step.state);
        step.activation_action = autoq::explore(greedy[0], x, draws_);
        step.goal_action = autoq::explore(greedy[1], x, draws_);
        const int activation_bits = autoq::action_to_bits(step.activation_action, space_.activation_bits);
        std::vector<size_t> set{l};
        if (space_.granularity == Granularity::network) set = unpinned_;
        for (size_t target : set) {
            LayerBits& bits = e.policy.layers[target];
            bits.activation_bits = activation_bits;
            if (llc_) {
                step.walk = llc_->walk(view(target, step.state), step.goal_action, x, draws_);
                bits.weight_bits = step.walk->bits;
            } else {
                std::fill(bits.weight_bits.begin(), bits.weight_bits.end(),
                          autoq::action_to_bits(step.goal_action, space_.weight_bits));
            }
            spent += layer_cost(budget_axis_, bits, target);
        }
        previous_activation = step.activation_action;
        previous_goal = step.goal_action;
        e.steps.push_back(std::move(step));
    }
    if (space_.constraints.has_cost_constraint()) project(e.policy);
    return e;
}

double AutoqPolicy::error(size_t layer, size_t kernel, int bits) const {
    if (bits == 0) return 1.0;
    const auto it = std::find(space_.weight_bits.begin(), space_.weight_bits.end(), bits);
    if (it == space_.weight_bits.end()) return 0.0;
    return kernels_[layer][kernel].error[static_cast<size_t>(it - space_.weight_bits.begin())];
}

// See "projection" in the header comment. Each pass recomputes the costs from scratch, finds the
// first exceeded constraint and lowers weights (or, failing that, activations) on its axis.
void AutoqPolicy::project(BitPolicy& policy) const {
    const std::vector<int>& allowed =
        space_.granularity == Granularity::kernel ? kernel_bits_ : space_.weight_bits;
    const std::vector<ProjectionUnit> units = projection_units();
    for (;;) {
        const Costs costs = compute_costs(graph_, policy);
        const std::optional<Axis> over = exceeded(space_.constraints, costs);
        if (!over) return; // exceeded() checks what meets_cost_constraints() checks
        // Lower weight bits step by step on running totals; compute_costs checks again after.
        const int64_t excess = excess_on(*over, space_.constraints, costs);
        if (lower_weights(policy, units, *over, excess, allowed)) continue;
        lower_activations(policy, *over);
    }
}

// Every unit that moves together, in graph (then kernel) order: the order breaks ties.
std::vector<ProjectionUnit> AutoqPolicy::projection_units() const {
    std::vector<ProjectionUnit> units;
    if (space_.granularity == Granularity::network) units.push_back({unpinned_, std::nullopt});
    else if (space_.granularity == Granularity::layer)
        for (size_t l : unpinned_) units.push_back({{l}, std::nullopt});
    else
        for (size_t l : unpinned_)
            for (size_t k = 0; k < kernels_[l].size(); ++k) units.push_back({{l}, k});
    return units;
}

// Lowering `unit` by one allowed step in `policy`, or nothing when a kernel of it is at its
// lowest bits or the step would prune a layer's last kept kernel (that would cut the network).
std::optional<WeightStep> AutoqPolicy::weight_step(const BitPolicy& policy,
                                                   const ProjectionUnit& unit, Axis axis,
                                                   const std::vector<int>& allowed) const {
    WeightStep step;
    for (size_t l : unit.layers) {
        const LayerBits& bits = policy.layers[l];
        const auto [first, end] = unit_kernels(unit, bits.weight_bits.size());
        for (size_t k = first; k < end; ++k) {
            const auto lower = next_lower_bits(allowed, bits.weight_bits[k]);
            if (!lower) return std::nullopt;
            const std::vector<int>& w = bits.weight_bits;
            if (*lower == 0 && std::count(w.begin(), w.end(), 0) + 1 ==
                                   static_cast<std::ptrdiff_t>(w.size()))
                return std::nullopt; // pruning the last kept kernel would cut the network
            step.sensitivity += error(l, k, *lower) - error(l, k, bits.weight_bits[k]);
            const int activation_bits = bits.activation_bits;
            step.saving += kernel_cost(axis, shapes_[l], bits.weight_bits[k], activation_bits) -
                           kernel_cost(axis, shapes_[l], *lower, activation_bits);
        }
    }
    return step;
}

// Greedily lowers the unit with the least error per unit of cost saved on `axis` (ties: the
// earlier unit) until `excess` is saved or no step saves anything. Returns whether any moved.
bool AutoqPolicy::lower_weights(BitPolicy& policy, const std::vector<ProjectionUnit>& units,
                                Axis axis, int64_t excess, const std::vector<int>& allowed) const {
    bool lowered = false;
    while (excess > 0) {
        const ProjectionUnit* best = nullptr;
        double best_ratio = std::numeric_limits<double>::infinity();
        int64_t best_saving = 0;
        for (const ProjectionUnit& u : units) {
            const std::optional<WeightStep> step = weight_step(policy, u, axis, allowed);
            if (!step || step->saving <= 0) continue;
            const double ratio =
                std::max(0.0, step->sensitivity) / static_cast<double>(step->saving);
            if (ratio < best_ratio) {
                best = &u;
                best_ratio = ratio;
                best_saving = step->saving;
            }
        }
        if (!best) break;
        for (size_t l : best->layers) {
            std::vector<int>& weight_bits = policy.layers[l].weight_bits;
            const auto [first, end] = unit_kernels(*best, weight_bits.size());
            for (size_t k = first; k < end; ++k)
                weight_bits[k] = *next_lower_bits(allowed, weight_bits[k]);
        }
        excess -= best_saving;
        lowered = true;
    }
    return lowered;
}

// No weight step saves anything on `axis`: lower the activation bits of the layer that saves the
// most there (ties: the earlier layer; network granularity: every unpinned layer with it). Throws
// when no activation can go lower either, as then no policy of the space meets the constraints.
void AutoqPolicy::lower_activations(BitPolicy& policy, Axis axis) const {
    std::optional<size_t> target;
    int64_t target_saving = 0;
    for (size_t l : unpinned_) {
        const LayerBits& bits = policy.layers[l];
        const auto lower = next_lower_bits(space_.activation_bits, bits.activation_bits);
        if (!lower) continue;
        LayerBits moved = bits;
        moved.activation_bits = *lower;
        const int64_t saving = layer_cost(axis, bits, l) - layer_cost(axis, moved, l);
        if (saving > target_saving) {
            target = l;
            target_saving = saving;
        }
    }
    if (!target)
        throw Error("autoq: no policy of the search space meets the cost constraints (even "
                    "after lowering every bit-width the projection can); raise the limits, "
                    "allow lower bit-widths or pruning, or pin fewer layers");
    const std::vector<size_t> lowered_layers =
        space_.granularity == Granularity::network ? unpinned_ : std::vector<size_t>{*target};
    for (size_t l : lowered_layers)
        policy.layers[l].activation_bits =
            *next_lower_bits(space_.activation_bits, policy.layers[l].activation_bits);
}

// --- Rounds ----------------------------------------------------------------------------------

void AutoqPolicy::start_round() {
    round_.clear();
    proposed_ = scored_ = 0;
    const int64_t end_of_phase = next_episode_ < warmup_ ? std::min(warmup_, episodes_) : episodes_;
    const int64_t end = std::min(end_of_phase, next_episode_ + episodes_per_round_);
    for (int64_t e = next_episode_; e < end; ++e) round_.push_back(rollout(e));
    next_episode_ = end;
}

Proposal AutoqPolicy::propose(int64_t limit) {
    if (proposed_ > scored_)
        throw Error("autoq: propose() before the last proposal was observed; observe every "
                    "proposal's scores first");
    if (scored_ == round_.size()) {
        if (next_episode_ >= episodes_) return {{}, "done"};
        start_round();
    }
    Proposal p;
    p.stage = round_.front().index < warmup_ ? "warmup" : "episode";
    while (proposed_ < round_.size() && static_cast<int64_t>(p.candidates.size()) < limit)
        p.candidates.push_back(round_[proposed_++].policy);
    return p;
}

void AutoqPolicy::observe(std::span<const Evaluation> scored) {
    if (scored.size() != proposed_ - scored_)
        throw Error("autoq: observe() got " + std::to_string(scored.size()) +
                    " scores for a proposal of " + std::to_string(proposed_ - scored_) +
                    " candidates; hand back every candidate of the last proposal, in order");
    for (const Evaluation& e : scored) {
        Episode& episode = round_[scored_++];
        if (!(e.policy == episode.policy))
            throw Error("autoq: observe(): a score is for another policy than the one proposed; "
                        "keep the proposal's order");
        episode.score = e.score;
        rewards_.push_back(autoq::extrinsic_reward(mode_, weights_, e.score, reference_accuracy_));
    }
    last_observed_ = scored.size();
    if (scored_ == round_.size()) learn();
}

std::vector<double> AutoqPolicy::rewards() const {
    return std::vector<double>(rewards_.end() - static_cast<std::ptrdiff_t>(last_observed_),
                               rewards_.end());
}

double AutoqPolicy::relabelled_goal(const Episode& episode, const Step& step) {
    const LayerWalk& walk = *step.walk;
    const double achieved = autoq::goal_action(walk.mean_bits(), kernel_bits_);
    if (episode.index < warmup_) return achieved;
    std::vector<double> candidates{step.goal_action, achieved};
    for (size_t i = 0; i < relabel_samples; ++i)
        candidates.push_back(relabel_draws_.truncated_normal(achieved, relabel_sigma, 0.0, 1.0));
    return llc_->relabel(view(step.layer, step.state), walk, candidates);
}

// Stores the round's transitions and trains both agents (see "learning" in the header).
void AutoqPolicy::learn() {
    const size_t first_reward = rewards_.size() - round_.size();
    if (llc_) {
        for (size_t i = 0; i < round_.size(); ++i)
            for (const Step& step : round_[i].steps)
                llc_->remember(*step.walk, eta_ * rewards_[first_reward + i]);
        for (const Episode& episode : round_)
            if (episode.index >= warmup_)
                for (int64_t u = 0; u < llc_updates_; ++u) llc_->agent().update();
    }
    for (size_t i = 0; i < round_.size(); ++i) {
        const Episode& episode = round_[i];
        for (size_t s = 0; s < episode.steps.size(); ++s) {
            const Step& step = episode.steps[s];
            Transition t;
            t.state = step.state;
            const double goal = step.walk ? relabelled_goal(episode, step) : step.goal_action;
            t.action = {static_cast<float>(step.activation_action), static_cast<float>(goal)};
            t.reward = rewards_[first_reward + i];
            t.terminal = s + 1 == episode.steps.size();
            if (!t.terminal) t.next_state = episode.steps[s + 1].state;
            hlc_->remember(std::move(t));
        }
    }
    for (const Episode& episode : round_)
        if (episode.index >= warmup_)
            for (size_t s = 0; s < episode.steps.size(); ++s) hlc_->update();
}

std::string AutoqPolicy::status() const {
    std::ostringstream out;
    out << "episode " << rewards_.size() << "/" << episodes_;
    if (!rewards_.empty()) {
        out.precision(3);
        out << ", reward " << rewards_.back() << " (best "
            << *std::max_element(rewards_.begin(), rewards_.end()) << ")";
    }
    return out.str();
}

std::unique_ptr<SearchPolicy> make_autoq(const PolicyContext& context) {
    if (!context.graph)
        throw Error("autoq: the policy context has no graph; set PolicyContext::graph");
    return std::make_unique<AutoqPolicy>(context);
}

} // namespace

PolicyInfo autoq_policy_info() {
    return {"autoq",
            "AutoQ: hierarchical DDPG (layer goals and activation bits, kernel bits towards the "
            "goal) with HIRO relabelling, one episode per candidate",
            {text_param("mode", "resource_constrained",
                        {"resource_constrained", "accuracy_guaranteed"},
                        "reward: accuracy under the projected budget, or accuracy against "
                        "BitOPs and memory"),
             integer_param("episodes", "300", 1, 1000000, "episodes (= candidates) of the search"),
             integer_param("warmup_episodes", "20", 0, 1000000,
                           "first episodes with uniformly random actions and no learning"),
             integer_param("episodes_per_batch", "8", 1, 4096,
                           "episodes rolled out with the same actors and scored together"),
             integer_param("llc_updates", "64", 0, 1000000,
                           "minibatch updates of the low-level agent per episode"),
             real_param("actor_lr", "1e-4", 0.0, 1.0, "Adam learning rate of the actors"),
             real_param("critic_lr", "1e-3", 0.0, 1.0, "Adam learning rate of the critics"),
             real_param("tau", "0.01", 0.0, 1.0, "soft update rate of the target networks"),
             real_param("discount", "1.0", 0.0, 1.0, "discount factor"),
             integer_param("batch", "64", 1, 4096, "minibatch size of the updates"),
             integer_param("replay_size", "128", 1, 1000000,
                           "episodes whose transitions the replay buffers keep"),
             integer_param("hidden", "300", 1, 4096, "units of both hidden layers"),
             real_param("sigma", "0.5", 0.0, 10.0, "initial exploration noise"),
             real_param("sigma_decay", "0.99", 0.0, 1.0,
                        "noise factor per episode after the warm-up"),
             real_param("eta", "0.5", 0.0, 100.0,
                        "share of the extrinsic reward in the low-level reward"),
             real_param("psi_acc", "2", 0.0, 100.0, "accuracy_guaranteed: weight of log accuracy"),
             real_param("psi_bitops", "1", 0.0, 100.0,
                        "accuracy_guaranteed: weight of log relative BitOPs"),
             real_param("psi_mem", "0", 0.0, 100.0,
                        "accuracy_guaranteed: weight of log relative weight bytes")},
            make_autoq};
}

} // namespace mps
