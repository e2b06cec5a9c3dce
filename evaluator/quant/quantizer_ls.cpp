// Least-squares binary quantization (Pouransari, Tu, Tuzel 2020, "Least squares binary
// quantization of neural networks"): a kernel is approximated by a sum of b scaled sign vectors.
#include "evaluator/base/error.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace mps {
namespace {

double sign_of(double v) { return v >= 0.0 ? 1.0 : -1.0; } // sign(0) = +1, as in `uniform`

double mean_abs(const std::vector<double>& r) {
    double sum = 0.0;
    for (double v : r) sum += std::fabs(v);
    return sum / static_cast<double>(r.size());
}

// Greedy residual expansion: each step adds the least-squares optimal 1-bit approximation
// s * sign(r) of what is left, s = mean|r|. Each step can only lower the error, since
// |r - s sign(r)|^2 = |r|^2 - n s^2.
void greedy(std::span<const float> w, int bits, std::span<float> out) {
    std::vector<double> residual(w.begin(), w.end());
    std::vector<double> sum(w.size(), 0.0);
    for (int step = 0; step < bits; ++step) {
        const double s = mean_abs(residual);
        if (s == 0.0) break;
        for (size_t i = 0; i < residual.size(); ++i) {
            const double term = s * sign_of(residual[i]);
            sum[i] += term;
            residual[i] -= term;
        }
    }
    for (size_t i = 0; i < w.size(); ++i) out[i] = static_cast<float>(sum[i]);
}

// Exact least-squares 2-bit expansion s1*b1 + s2*b2: its levels are +-a, +-c with any
// 0 <= a <= c, so the optimum is the best 2-means split of the sorted magnitudes |w| (a
// contiguous split), each group's level being its mean magnitude.
void optimal_two_bit(std::span<const float> w, std::span<float> out) {
    const size_t n = w.size();
    std::vector<double> mag(n);
    for (size_t i = 0; i < n; ++i) mag[i] = std::fabs(static_cast<double>(w[i]));
    std::sort(mag.begin(), mag.end());
    std::vector<double> sum(n + 1, 0.0), sum_sq(n + 1, 0.0);
    for (size_t i = 0; i < n; ++i) {
        sum[i + 1] = sum[i] + mag[i];
        sum_sq[i + 1] = sum_sq[i] + mag[i] * mag[i];
    }
    auto sse = [&](size_t from, size_t to) { // squared error of [from, to) around its mean
        if (to <= from) return 0.0;
        const double s = sum[to] - sum[from];
        return (sum_sq[to] - sum_sq[from]) - s * s / static_cast<double>(to - from);
    };
    size_t best_split = n; // all in one group: the 1-bit solution
    double best = sse(0, n);
    for (size_t j = 1; j < n; ++j) {
        if (mag[j - 1] == mag[j]) continue; // keep equal magnitudes in one group
        const double e = sse(0, j) + sse(j, n);
        if (e < best) {
            best = e;
            best_split = j;
        }
    }
    const double low = best_split ? sum[best_split] / static_cast<double>(best_split) : 0.0;
    const double high = best_split < n ? (sum[n] - sum[best_split]) /
                                             static_cast<double>(n - best_split)
                                       : low;
    const double threshold = best_split ? mag[best_split - 1] : -1.0;
    for (size_t i = 0; i < n; ++i) {
        const double m = std::fabs(static_cast<double>(w[i]));
        out[i] = static_cast<float>(sign_of(w[i]) * (m <= threshold ? low : high));
    }
}

class LsQuantizer final : public WeightQuantizer {
public:
    explicit LsQuantizer(bool optimal_two_bit) : optimal_two_bit_(optimal_two_bit) {}
    std::string name() const override { return "ls"; }
    QuantizerArgs args() const override {
        return {{"two_bit", optimal_two_bit_ ? "optimal" : "greedy"}};
    }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        if (bits == 2 && optimal_two_bit_)
            optimal_two_bit(w, out);
        else
            greedy(w, bits, out);
    }

private:
    bool optimal_two_bit_;
};

} // namespace

std::unique_ptr<WeightQuantizer> make_ls_quantizer(const QuantizerArgs& args) {
    const std::string owner = "weight quantizer 'ls'";
    check_args(owner, args, {"two_bit"});
    bool optimal = false;
    if (auto it = args.find("two_bit"); it != args.end()) {
        if (it->second != "greedy" && it->second != "optimal")
            throw Error(owner + ": argument two_bit = '" + it->second +
                        "' must be 'greedy' or 'optimal'");
        optimal = it->second == "optimal";
    }
    return std::make_unique<LsQuantizer>(optimal);
}

} // namespace mps
