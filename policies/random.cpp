// Policy `random`: seeded random policies at the space's granularity, the baseline every guided
// search must beat at the same number of evaluations.
//
// Candidates come one after another from one generator, so the i-th candidate is the same
// whatever the batch sizes. The draws are RandomDraws (evaluator/base/seeded_random.h) rather than std
// distributions, whose output differs between standard libraries: the same seed gives the same
// candidates on every platform.
#include "policies/policy.h"

#include "evaluator/base/seeded_random.h"

#include <algorithm>
#include <optional>

namespace mps {

namespace {

// One of `values`, uniformly.
int one_of(RandomDraws& draws, const std::vector<int>& values) {
    return values[draws.below(values.size())];
}

// One step down that fit_budget may take: the activation bits of `layer`, or the weight bits of
// kernel `kernel` of `layer` (`all_kernels`: every kernel of it); at network granularity a step
// moves every unpinned layer at once (`every_layer`).
struct Step {
    bool activation = false;
    bool every_layer = false;
    bool all_kernels = false;
    size_t layer = 0;
    size_t kernel = 0;
};

class RandomPolicy final : public SearchPolicy {
public:
    explicit RandomPolicy(const PolicyContext& context)
        : graph_(*context.graph), space_(context.space), draws_(context.seed),
          fit_budget_(context.params.boolean("fit_budget") &&
                      context.space.constraints.has_cost_constraint()),
          prune_probability_(context.params.real("prune_probability")),
          kernel_bits_(context.space.kernel_weight_bits()), start_(context.space.highest(graph_)) {
        for (size_t i = 0; i < start_.layers.size(); ++i)
            if (!space_.is_pinned(start_.layers[i].name)) unpinned_.push_back(i);
        for (const Node* layer : quantizable_layers(graph_))
            shapes_.push_back(kernel_shape(graph_, *layer));
    }

    Proposal propose(int64_t limit) override {
        Proposal proposal{{}, "random"};
        for (int64_t i = 0; i < limit; ++i) {
            BitPolicy candidate = sample();
            if (fit_budget_) fit(candidate);
            proposal.candidates.push_back(std::move(candidate));
        }
        proposed_ += limit;
        return proposal;
    }

    void observe(std::span<const Evaluation>) override {}

    std::string status() const override {
        return "random: " + std::to_string(proposed_) + " proposed";
    }

private:
    BitPolicy sample() {
        BitPolicy policy = start_; // pinned layers keep their pins
        switch (space_.granularity) {
        case Granularity::network: {
            const int w = one_of(draws_, space_.weight_bits);
            const int a = one_of(draws_, space_.activation_bits);
            for (size_t l : unpinned_) set_layer(policy.layers[l], w, a);
            break;
        }
        case Granularity::layer:
            for (size_t l : unpinned_) {
                const int w = one_of(draws_, space_.weight_bits);
                set_layer(policy.layers[l], w, one_of(draws_, space_.activation_bits));
            }
            break;
        case Granularity::kernel:
            for (size_t l : unpinned_) sample_kernels(policy.layers[l]);
            break;
        }
        return policy;
    }

    static void set_layer(LayerBits& layer, int weight_bits, int activation_bits) {
        layer.activation_bits = activation_bits;
        std::fill(layer.weight_bits.begin(), layer.weight_bits.end(), weight_bits);
    }

    void sample_kernels(LayerBits& layer) {
        const bool pruning = kernel_bits_.back() == 0;
        layer.activation_bits = one_of(draws_, space_.activation_bits);
        bool any_kept = false;
        for (int& bits : layer.weight_bits) {
            bits = pruning && draws_.unit() < prune_probability_ ? 0
                                                                 : one_of(draws_, space_.weight_bits);
            any_kept = any_kept || bits != 0;
        }
        // A fully pruned layer would cut the network: give one kernel back its bits.
        if (!any_kept && !layer.weight_bits.empty())
            layer.weight_bits[draws_.below(layer.weight_bits.size())] =
                one_of(draws_, space_.weight_bits);
    }

    // Lowers randomly chosen elements one allowed step at a time until `policy` meets the cost
    // constraints or nothing can be lowered. The result lies near the budget boundary, where the
    // good policies are, instead of far above it where most plain samples land.
    void fit(BitPolicy& policy) {
        Costs costs = compute_costs(graph_, policy);
        for (;;) {
            if (meets_cost_constraints(space_.constraints, costs)) {
                // The running totals are exact; compute_costs stays the authority all the same.
                costs = compute_costs(graph_, policy);
                if (meets_cost_constraints(space_.constraints, costs)) return;
            }
            const std::vector<Step> steps = possible_steps(policy);
            if (steps.empty()) return;
            apply(steps[draws_.below(steps.size())], policy, costs);
        }
    }

    std::vector<Step> possible_steps(const BitPolicy& policy) const {
        std::vector<Step> steps;
        if (unpinned_.empty()) return steps;
        if (space_.granularity == Granularity::network) {
            const LayerBits& any = policy.layers[unpinned_.front()];
            if (next_lower_bits(space_.weight_bits, any.weight_bits.front()))
                steps.push_back({false, true, true, 0, 0});
            if (next_lower_bits(space_.activation_bits, any.activation_bits))
                steps.push_back({true, true, false, 0, 0});
            return steps;
        }
        for (size_t l : unpinned_) {
            const LayerBits& layer = policy.layers[l];
            if (next_lower_bits(space_.activation_bits, layer.activation_bits))
                steps.push_back({true, false, false, l, 0});
            if (space_.granularity == Granularity::layer) {
                if (next_lower_bits(space_.weight_bits, layer.weight_bits.front()))
                    steps.push_back({false, false, true, l, 0});
                continue;
            }
            const auto kept = std::count_if(layer.weight_bits.begin(), layer.weight_bits.end(),
                                            [](int b) { return b != 0; });
            for (size_t k = 0; k < layer.weight_bits.size(); ++k) {
                const auto lower = next_lower_bits(kernel_bits_, layer.weight_bits[k]);
                // Pruning the last kept kernel would cut the network.
                if (lower && (*lower != 0 || kept > 1)) steps.push_back({false, false, false, l, k});
            }
        }
        return steps;
    }

    // Takes `step` and updates the constrained totals of `costs` (BitOPs, weight bits, FLOPs) by
    // the change of every kernel it touches, as costs.h defines them: recomputing the costs of
    // the whole network for each of the many small steps would dominate the proposal time.
    void apply(const Step& step, BitPolicy& policy, Costs& costs) const {
        std::vector<size_t> layers{step.layer};
        if (step.every_layer) layers = unpinned_;
        for (size_t l : layers) {
            LayerBits& layer = policy.layers[l];
            const LayerBits before = layer;
            if (step.activation) {
                layer.activation_bits =
                    *next_lower_bits(space_.activation_bits, layer.activation_bits);
            } else if (step.all_kernels) {
                const int lower = *next_lower_bits(space_.weight_bits, layer.weight_bits.front());
                std::fill(layer.weight_bits.begin(), layer.weight_bits.end(), lower);
            } else {
                int& bits = layer.weight_bits[step.kernel];
                bits = *next_lower_bits(kernel_bits_, bits);
            }
            for (size_t k = 0; k < layer.weight_bits.size(); ++k) {
                add_kernel(costs, l, before.weight_bits[k], before.activation_bits, -1);
                add_kernel(costs, l, layer.weight_bits[k], layer.activation_bits, +1);
            }
        }
    }

    // Adds (sign +1) or removes (-1) the share of one kernel of layer `l` at `weight_bits` with
    // the layer's input at `activation_bits` (kernel_costs; biases do not change).
    void add_kernel(Costs& costs, size_t l, int weight_bits, int activation_bits,
                    int64_t sign) const {
        const KernelCosts share = kernel_costs(shapes_[l], weight_bits, activation_bits);
        costs.bitops += sign * share.bitops;
        costs.weight_bits += sign * share.weight_bits;
        costs.flops += sign * 2 * share.unpruned_macs;
    }

    const Graph& graph_;
    SearchSpace space_;
    RandomDraws draws_;
    bool fit_budget_;
    double prune_probability_;
    std::vector<int> kernel_bits_;  // allowed bits of one kernel (0 last when pruning is allowed)
    BitPolicy start_;               // highest bits; the pinned layers' entries are final
    std::vector<size_t> unpinned_;  // indices into BitPolicy::layers
    std::vector<KernelShape> shapes_; // per quantizable layer, graph order
    int64_t proposed_ = 0;
};

std::unique_ptr<SearchPolicy> make_random(const PolicyContext& context) {
    return std::make_unique<RandomPolicy>(context);
}

} // namespace

PolicyInfo random_policy_info() {
    return {"random",
            "seeded random policies at the search space's granularity, optionally lowered into "
            "the cost budget",
            {boolean_param("fit_budget", "true",
                           "lower random elements of a candidate one step at a time until it "
                           "meets the cost constraints"),
             real_param("prune_probability", "0.1", 0.0, 1.0,
                        "chance that a kernel is drawn pruned (kernel granularity with pruning "
                        "allowed)")},
            make_random};
}

} // namespace mps
