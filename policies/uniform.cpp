// Policy `uniform`: the baseline grid. Every (w, a) of the space's allowed weight x activation
// bits as one setting for the whole network (pinned layers at their pins), from the most to the
// least expensive, so that a run cut short by its budget has scored the safe end of the grid.
#include "policies/policy.h"

#include <algorithm>

namespace mps {

namespace {

class UniformPolicy final : public SearchPolicy {
public:
    explicit UniformPolicy(const PolicyContext& context) {
        std::vector<UniformBits> grid;
        for (int w : context.space.weight_bits)
            for (int a : context.space.activation_bits) grid.push_back({w, a});
        // BitOPs of a uniform policy grow with w * a; ties go to the wider weights.
        std::stable_sort(grid.begin(), grid.end(), [](UniformBits x, UniformBits y) {
            const int cx = x.weight_bits * x.activation_bits;
            const int cy = y.weight_bits * y.activation_bits;
            return cx != cy ? cx > cy : x.weight_bits > y.weight_bits;
        });
        const auto layers = quantizable_layers(*context.graph);
        for (UniformBits bits : grid) {
            std::vector<UniformBits> per_layer;
            for (const Node* layer : layers) {
                const auto pin = context.space.pinned.find(layer->name);
                per_layer.push_back(pin != context.space.pinned.end() ? pin->second : bits);
            }
            grid_.push_back(BitPolicy::per_layer(*context.graph, per_layer));
        }
    }

    Proposal propose(int64_t limit) override {
        Proposal proposal{{}, "uniform"};
        while (next_ < grid_.size() && static_cast<int64_t>(proposal.candidates.size()) < limit)
            proposal.candidates.push_back(grid_[next_++]);
        return proposal;
    }

    void observe(std::span<const Evaluation>) override {}

    std::string status() const override {
        return "uniform: " + std::to_string(next_) + "/" + std::to_string(grid_.size());
    }

private:
    std::vector<BitPolicy> grid_;
    size_t next_ = 0; // the first grid point not yet proposed
};

std::unique_ptr<SearchPolicy> make_uniform(const PolicyContext& context) {
    return std::make_unique<UniformPolicy>(context);
}

} // namespace

PolicyInfo uniform_policy_info() {
    return {"uniform",
            "baseline grid: every allowed (weight, activation) bit pair for the whole network, "
            "most expensive first",
            {},
            make_uniform};
}

} // namespace mps
