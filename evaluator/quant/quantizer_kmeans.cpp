// K-means weight quantizer: a per-kernel codebook of 2^b centroids found by Lloyd's algorithm in
// one dimension, started from 2^b points evenly spaced between the kernel's min and max.
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>

namespace mps {
namespace {

class KmeansQuantizer final : public WeightQuantizer {
public:
    explicit KmeansQuantizer(int iterations) : iterations_(iterations) {}
    std::string name() const override { return "kmeans"; }
    QuantizerArgs args() const override { return {{"iterations", std::to_string(iterations_)}}; }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        const size_t k = size_t{1} << bits;
        std::vector<float> sorted(w.begin(), w.end());
        std::sort(sorted.begin(), sorted.end());
        const size_t distinct =
            static_cast<size_t>(std::unique(sorted.begin(), sorted.end()) - sorted.begin());
        if (distinct <= k) { // the codebook can hold every value: the exact, zero-error optimum
            std::copy(w.begin(), w.end(), out.begin());
            return;
        }
        const double lo = sorted.front(), hi = sorted[distinct - 1];
        std::vector<double> centroids(k);
        for (size_t j = 0; j < k; ++j)
            centroids[j] = lo + (hi - lo) * static_cast<double>(j) / static_cast<double>(k - 1);
        std::vector<size_t> assignment(w.size(), k); // k = not yet assigned
        for (int iteration = 0; iteration < iterations_; ++iteration) {
            if (!assign(w, centroids, assignment)) break;
            update(w, assignment, centroids);
        }
        assign(w, centroids, assignment);
        for (size_t i = 0; i < w.size(); ++i)
            out[i] = static_cast<float>(centroids[assignment[i]]);
    }

private:
    // Nearest centroid of every weight (the lower one on a tie); centroids must be sorted.
    // Returns whether any assignment changed.
    static bool assign(std::span<const float> w, const std::vector<double>& centroids,
                       std::vector<size_t>& assignment) {
        std::vector<double> midpoints(centroids.size() - 1);
        for (size_t j = 0; j + 1 < centroids.size(); ++j)
            midpoints[j] = 0.5 * (centroids[j] + centroids[j + 1]);
        bool changed = false;
        for (size_t i = 0; i < w.size(); ++i) {
            const size_t j = static_cast<size_t>(
                std::lower_bound(midpoints.begin(), midpoints.end(), static_cast<double>(w[i])) -
                midpoints.begin());
            changed |= assignment[i] != j;
            assignment[i] = j;
        }
        return changed;
    }

    // Each centroid moves to the mean of its weights (an empty cluster keeps its place); the
    // codebook is re-sorted so that assign() can search it.
    static void update(std::span<const float> w, const std::vector<size_t>& assignment,
                       std::vector<double>& centroids) {
        std::vector<double> sum(centroids.size(), 0.0);
        std::vector<size_t> count(centroids.size(), 0);
        for (size_t i = 0; i < w.size(); ++i) {
            sum[assignment[i]] += w[i];
            ++count[assignment[i]];
        }
        for (size_t j = 0; j < centroids.size(); ++j)
            if (count[j]) centroids[j] = sum[j] / static_cast<double>(count[j]);
        std::sort(centroids.begin(), centroids.end());
    }

    int iterations_;
};

} // namespace

std::unique_ptr<WeightQuantizer> make_kmeans_quantizer(const QuantizerArgs& args) {
    const std::string owner = "weight quantizer 'kmeans'";
    check_args(owner, args, {"iterations"});
    return std::make_unique<KmeansQuantizer>(int_arg(owner, args, "iterations", 100, 1, 100000));
}

} // namespace mps
