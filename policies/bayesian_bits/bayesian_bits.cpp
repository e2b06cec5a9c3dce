// Policy `bayesian_bits` (docs/policies.md, "bayesian_bits"): gates on nested residual
// quantizers learned by gradient (policies/bayesian_bits/gated_network.h), one training per value of mu; each
// mu gives one candidate, its thresholded gates mapped into the search space.
//
// The sweep: `mu_count` values from `mu_min` to `mu_max`, evenly spaced in log(mu), the smallest
// first; then, with a cost constraint, `bisect_steps` values of mu bisected (geometric means)
// between the largest mu whose candidate exceeds the budget and the next one that fits, to land
// close under the budget (while none fits: one sweep step beyond the largest mu). A space that
// leaves no gate to learn trains once. Every value trains from the same start (the model's
// weights, gates open up to the space's widest bits, ranges from calibration) with the same
// seed, so points differ only by mu.
// Training images are the train split, shuffled once per pass with std::mt19937_64(seed).
//   post_training: `steps` steps of gates and ranges, weights frozen.
//   finetune:      `steps` steps of gates, ranges and weights together, then the gates are
//                  thresholded and fixed and `finetune_steps` more steps train ranges and weights.
//                  The candidate the run scores is only bits: the evaluator scores them on the
//                  model's own weights; `mpsearch finetune` tunes the chosen policy's weights.
// Each candidate also carries the policy's own validation accuracy (own_accuracy(): thresholded
// gates, learned ranges, Bayesian Bits grid, tuned weights in finetune mode).
// The space maps gates to bits: levels above its widest bit-width stay closed, levels below its
// narrowest stay open, z_2 is learned only when kernels may be pruned (gate_states), and a learned
// bit-width outside the space becomes the nearest allowed one above it (nearest_allowed_bits).
// `grid: run` gates the space's own bit-widths (run_levels) with the run's quantizers, so its
// candidates need no mapping and its own accuracy is the evaluator's; `regularizer: bitops`
// prices bits by expected BitOPs (GateRegularizer).
#include "evaluator/base/error.h"
#include "evaluator/base/seeded_random.h"
#include "policies/bayesian_bits/gated_network.h"
#include "policies/policy.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <numeric>
#include <optional>
#include <random>

namespace mps {

namespace {

class BayesianBitsPolicy final : public SearchPolicy {
public:
    explicit BayesianBitsPolicy(const PolicyContext& c) : context_(c) {
        if (!c.train_images || !c.validation_images || !c.calibration)
            throw Failure("bayesian_bits: the run gave no training data (a bug in the run loop)");
        if (c.space.granularity == Granularity::network)
            throw Error("bayesian_bits: granularity `network` has no per-layer gates; set "
                        "granularity to `kernel` (default) or `layer`");
        const ParamValues& p = c.params;
        const double lo = p.real("mu_min"), hi = p.real("mu_max");
        const int64_t count = p.integer("mu_count");
        if (hi < lo) throw Error("bayesian_bits: mu_max must not be below mu_min");
        for (int64_t i = 0; i < count; ++i) {
            const double t = count == 1 ? 0.0 : static_cast<double>(i) / (count - 1);
            mus_.push_back(std::exp(std::log(lo) + t * (std::log(hi) - std::log(lo))));
        }
        if (!learns_any_gate()) { // mu changes nothing: one training gives the only point
            mus_.resize(1);
            bisect_ = false;
        }
    }

    Proposal propose(int64_t) override {
        own_.clear();
        proposed_.clear();
        // One mu per batch (the limit is at least 1): trainings run one after the other anyway,
        // and each finished one reaches the archive (and the progress line) at once.
        Proposal proposal;
        if (next_ < mus_.size()) {
            add(proposal, "sweep", mus_[next_++]);
        } else if (bisect_ && bisections_ < context_.params.integer("bisect_steps")) {
            if (const std::optional<double> mu = bisection_mu()) {
                ++bisections_;
                add(proposal, "bisection", *mu);
            }
        }
        return proposal;
    }

    void observe(std::span<const Evaluation> scored) override {
        for (size_t i = 0; i < scored.size() && i < proposed_.size(); ++i)
            tried_.push_back(
                {proposed_[i], meets_cost_constraints(context_.space.constraints, scored[i].score.costs)});
    }

    std::vector<double> own_accuracy() const override { return own_; }

    std::string status() const override {
        if (next_ < mus_.size() || bisections_ == 0)
            return "mu " + std::to_string(next_) + "/" + std::to_string(mus_.size());
        return "mu bisection " + std::to_string(bisections_);
    }

private:
    struct Tried {
        double mu;
        bool fits; // its candidate met the cost constraints
    };

    // The candidate of one mu; its stage names the mu ("sweep mu=0.04472"), which the archive
    // and the report then show.
    void add(Proposal& proposal, const std::string& kind, double mu) {
        char name[64];
        std::snprintf(name, sizeof name, "%s mu=%.4g", kind.c_str(), mu);
        proposal.stage = name;
        auto [policy, accuracy] = archived_or_trained(name, mu);
        proposal.candidates.push_back(std::move(policy));
        own_.push_back(accuracy);
        proposed_.push_back(mu);
    }

    // Cost falls as mu grows: the geometric mean of the largest mu whose candidate is over the
    // budget and the smallest mu above it that fits; when nothing above it fits, one sweep step
    // beyond it (x4 for a one-value sweep). No cost constraint, or every candidate fits: none.
    std::optional<double> bisection_mu() const {
        if (!context_.space.constraints.has_cost_constraint()) return std::nullopt;
        std::optional<double> over, fits;
        for (const Tried& t : tried_)
            if (!t.fits && (!over || t.mu > *over)) over = t.mu;
        if (!over) return std::nullopt;
        for (const Tried& t : tried_)
            if (t.fits && t.mu > *over && (!fits || t.mu < *fits)) fits = t.mu;
        if (!fits) return *over * (mus_.size() > 1 ? mus_[1] / mus_[0] : 4.0);
        return std::sqrt(*over * *fits);
    }

    // The candidate of the next mu. On a resumed run the archive usually holds it: the record at
    // this index with this stage (which names the mu) and the policy's own accuracy. Training is
    // deterministic and would give the same candidate, so it is taken from there instead of
    // training again (minutes per mu); the run loop still checks it against the archive.
    std::pair<BitPolicy, double> archived_or_trained(const std::string& stage, double mu) {
        const size_t index = candidates_++;
        if (index < context_.archived.size()) {
            const ArchivedCandidate& a = context_.archived[index];
            if (a.stage == stage && a.own_accuracy) return {a.policy, *a.own_accuracy};
        }
        return train(mu);
    }

    bool learns_any_gate() const {
        for (const GatedLayer& layer : layer_setups()) {
            if (!layer.learned) continue;
            for (const GateStates* states : {&layer.weight_gates, &layer.activation_gates})
                if (std::find(states->begin(), states->end(), GateState::learned) != states->end())
                    return true;
        }
        return false;
    }

    std::vector<GatedLayer> layer_setups() const {
        const SearchSpace& space = context_.space;
        // The run grid gates the space's own bit-widths; the nested grid 2, 4, 8, 16, 32.
        const bool run = context_.params.text("grid") == "run";
        const GateLevels weight_levels = run ? run_levels(space.kernel_weight_bits()) : residual_bits;
        const GateLevels activation_levels = run ? run_levels(space.activation_bits) : residual_bits;
        const GateStates weights = gate_states(space.kernel_weight_bits(), weight_levels);
        const GateStates activations = gate_states(space.activation_bits, activation_levels);
        std::vector<GatedLayer> layers;
        for (const Node* node : quantizable_layers(*context_.graph)) {
            GatedLayer layer{node->name, true, {}, weights, activations, weight_levels,
                             activation_levels};
            if (auto pin = space.pinned.find(node->name); pin != space.pinned.end()) {
                layer.learned = false;
                layer.fixed = pin->second;
            }
            layers.push_back(layer);
        }
        return layers;
    }

    GatedOptions options() const {
        const ParamValues& p = context_.params;
        GatedOptions o;
        o.per_kernel = context_.space.granularity == Granularity::kernel;
        o.train_weights = p.text("mode") == "finetune";
        o.batch = p.integer("batch");
        o.lr = p.real("lr");
        o.gate_lr = p.real("gate_lr");
        o.weight_lr = p.real("weight_lr");
        o.seed = context_.seed;
        o.regularizer =
            p.text("regularizer") == "bitops" ? GateRegularizer::bitops : GateRegularizer::bits;
        o.grid = p.text("grid") == "run" ? GateGrid::run : GateGrid::bayesian_bits;
        o.weight_quantizer = context_.weight_quantizer;
        return o;
    }

    // One mu: the trained network's thresholded policy, mapped into the space, and its own
    // validation accuracy.
    std::pair<BitPolicy, double> train(double mu) {
        const GatedOptions o = options();
        GatedNetwork net(*context_.graph, layer_setups(), *context_.calibration, o);
        const ParamValues& p = context_.params;
        const int64_t steps = p.integer("steps");
        const int64_t tune = o.train_weights ? p.integer("finetune_steps") : 0;
        Batches batches(*context_.train_images, o.batch, context_.seed);
        for (int64_t s = 0; s < steps + tune; ++s) {
            if (s == steps) net.fix_gates();
            batches.next();
            net.step(batches.images.data(), batches.labels.data(), s < steps ? mu : 0.0);
        }
        const double accuracy = net.accuracy(*context_.validation_images);
        return {into_space(net.thresholded_policy(), net.keep_probabilities()), accuracy};
    }

    // Learned bits (0, 2, 4, ..., 32) as the nearest allowed ones of the space. A layer whose
    // every kernel was pruned would cut the network: its most probable kernel (highest
    // q(z_2 > 0)) is kept, at the narrowest allowed bit-width.
    BitPolicy into_space(BitPolicy policy, const std::vector<std::vector<double>>& keep) const {
        const SearchSpace& space = context_.space;
        const std::vector<int> kernel_bits = space.kernel_weight_bits();
        for (size_t l = 0; l < policy.layers.size(); ++l) {
            LayerBits& layer = policy.layers[l];
            if (space.is_pinned(layer.name)) continue;
            for (int& b : layer.weight_bits) b = nearest_allowed_bits(b, kernel_bits);
            layer.activation_bits = nearest_allowed_bits(layer.activation_bits, space.activation_bits);
            std::vector<int>& w = layer.weight_bits;
            if (!w.empty() && std::all_of(w.begin(), w.end(), [](int b) { return b == 0; })) {
                const auto best = std::max_element(keep[l].begin(), keep[l].end());
                w[static_cast<size_t>(best - keep[l].begin())] = space.weight_bits.back();
            }
        }
        return policy;
    }

    // Training batches: the train split in a shuffled order, reshuffled after each pass.
    struct Batches {
        Batches(const Dataset& d, int64_t batch, uint64_t seed)
            : data(d), size(batch), rng(seed), order(static_cast<size_t>(d.count)),
              images(static_cast<size_t>(batch * d.image_size())), labels(static_cast<size_t>(batch)) {
            if (batch > d.count)
                throw Error("bayesian_bits: batch " + std::to_string(batch) + " is larger than the " +
                            std::to_string(d.count) + " training images; lower `batch`");
            shuffle();
        }
        void shuffle() {
            std::iota(order.begin(), order.end(), int64_t{0});
            random_shuffle(rng, order.data(), order.size());
            cursor = 0;
        }
        void next() {
            if (cursor + size > data.count) shuffle();
            const int64_t n = data.image_size();
            for (int64_t i = 0; i < size; ++i) {
                const int64_t index = order[static_cast<size_t>(cursor + i)];
                std::memcpy(images.data() + i * n, data.image(index),
                            static_cast<size_t>(n) * sizeof(float));
                labels[static_cast<size_t>(i)] = data.labels[static_cast<size_t>(index)];
            }
            cursor += size;
        }
        const Dataset& data;
        int64_t size;
        std::mt19937_64 rng;
        std::vector<int64_t> order;
        std::vector<float> images;
        std::vector<uint8_t> labels;
        int64_t cursor = 0;
    };

    PolicyContext context_;
    std::vector<double> mus_;
    size_t next_ = 0;
    size_t candidates_ = 0;         // proposed so far, all batches
    std::vector<double> own_;       // of the last proposal
    std::vector<double> proposed_;  // mu of each candidate of the last proposal
    std::vector<Tried> tried_;
    int64_t bisections_ = 0;
    bool bisect_ = true; // false when no gate is learned: mu then changes nothing
};

std::unique_ptr<SearchPolicy> make_bayesian_bits(const PolicyContext& context) {
    return std::make_unique<BayesianBitsPolicy>(context);
}

} // namespace

PolicyInfo bayesian_bits_policy_info() {
    return {"bayesian_bits",
            "Bayesian Bits: hard-concrete gates on nested residual quantizers learned by gradient, "
            "one point per mu of a sweep",
            {
                text_param("mode", "post_training", {"post_training", "finetune"},
                           "post_training: gates and ranges learned, weights frozen; finetune: "
                           "weights trained too, then a fine-tune with the gates fixed"),
                text_param("grid", "bayesian_bits", {"bayesian_bits", "run"},
                           "bayesian_bits: the spec's nested grid on learned ranges; run: the "
                           "run's own quantizers at the space's bit-widths with calibrated ranges, "
                           "not learned (the gated network is the one the evaluator scores)"),
                text_param("regularizer", "bits", {"bits", "bitops"},
                           "bits: the spec's sum of MACs-weighted bits per quantizer; bitops: "
                           "the expected BitOPs, weight bits times activation bits per layer"),
                real_param("mu_min", "0.02", 1e-9, 1e6, "smallest regularizer strength"),
                real_param("mu_max", "0.5", 1e-9, 1e6, "largest regularizer strength"),
                integer_param("mu_count", "5", 1, 1000, "values of mu (one candidate each)"),
                integer_param("bisect_steps", "2", 0, 100,
                              "after the sweep: values of mu bisected (geometric mean) between "
                              "the largest one over the cost budget and the next one within it, "
                              "or one sweep step further while none is within it"),
                integer_param("steps", "300", 1, 10000000, "training steps per mu"),
                integer_param("finetune_steps", "200", 0, 10000000,
                              "finetune mode: steps with the gates fixed"),
                integer_param("batch", "64", 1, 65536, "images per step"),
                real_param("lr", "0.001", 1e-9, 10, "Adam learning rate of the ranges"),
                real_param("gate_lr", "0.03", 1e-9, 10, "Adam learning rate of the gate logits"),
                real_param("weight_lr", "0.001", 1e-9, 10,
                           "finetune mode: Adam learning rate of the weights"),
            },
            make_bayesian_bits,
            true};
}

} // namespace mps
