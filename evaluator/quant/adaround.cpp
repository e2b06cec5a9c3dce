// AdaRound's optimisation: the problem of a block of kernels sharing one H, its loss and gradient,
// and Adam over the blocks of a layer in parallel.
#include "evaluator/quant/adaround.h"

#include "evaluator/base/error.h"
#include "evaluator/base/ordered_gemm.h"
#include "evaluator/quant/quantizer.h"

#include <tbb/blocked_range.h>
#include <tbb/parallel_for.h>

#include <algorithm>
#include <cmath>
#include <string>

namespace mps {

namespace {

constexpr float zeta = 1.1f, gamma_ = -0.1f;

// Kernels optimised together: one matrix product of this many rows per step.
constexpr int64_t kernel_block = 16;

// dh/dV at v (0 where the rectified sigmoid is clipped).
float h_slope(float v) {
    const float u = 1.0f / (1.0f + std::exp(-v));
    const float stretched = u * (zeta - gamma_) + gamma_;
    return stretched > 0.0f && stretched < 1.0f ? (zeta - gamma_) * u * (1.0f - u) : 0.0f;
}

} // namespace

float adaround_h(float v) {
    const float u = 1.0f / (1.0f + std::exp(-v));
    return std::clamp(u * (zeta - gamma_) + gamma_, 0.0f, 1.0f);
}

AdaRoundProblem::AdaRoundProblem(std::span<const float> weights, int64_t size,
                                 std::span<const float> scales, int bits,
                                 std::span<const double> moments)
    : kernels_(static_cast<int64_t>(scales.size())), size_(size), moments_(moments) {
    if (size < 1 || static_cast<int64_t>(weights.size()) != kernels_ * size ||
        static_cast<int64_t>(moments.size()) != size * size)
        throw Error("adaround: " + std::to_string(weights.size()) + " weights, " +
                    std::to_string(scales.size()) + " scales and a " +
                    std::to_string(moments.size()) + "-value moment matrix do not fit kernels of " +
                    std::to_string(size));
    if (bits < 2 || bits > 16)
        throw Error("adaround: learns codes of 2..16 bits, not " + std::to_string(bits));
    qmax_ = uniform_qmax(bits);
    const float q = static_cast<float>(qmax_);
    x_.assign(weights.size(), 0.0f);
    floor_.assign(weights.size(), 0.0f);
    free_.assign(weights.size(), 0);
    for (int64_t k = 0; k < kernels_; ++k) {
        const float s = scales[static_cast<size_t>(k)];
        scales_.push_back(s);
        if (s == 0.0f) continue; // codes 0
        for (int64_t i = k * size; i < (k + 1) * size; ++i) {
            const float x = weights[static_cast<size_t>(i)] / s;
            const float f = std::floor(x);
            x_[static_cast<size_t>(i)] = x;
            floor_[static_cast<size_t>(i)] = std::clamp(f, -q, q);
            free_[static_cast<size_t>(i)] = f >= -q && f < q;
        }
    }
    double trace = 0.0;
    for (int64_t i = 0; i < size; ++i) trace += moments[static_cast<size_t>(i * size + i)];
    const double c = trace / static_cast<double>(size);
    h_.assign(moments.size(), 0.0f);
    if (c > 0.0 && std::isfinite(c)) // else every rounding has the same (zero) output error
        for (size_t i = 0; i < moments.size(); ++i) h_[i] = static_cast<float>(moments[i] / c);
}

std::vector<float> AdaRoundProblem::initial_v() const {
    std::vector<float> v(x_.size(), 0.0f);
    for (size_t i = 0; i < v.size(); ++i) {
        if (!free_[i]) continue;
        // sigmoid(V) = (frac - gamma) / (zeta - gamma), in (0.083, 0.917) for frac in [0, 1)
        const float p = (x_[i] - floor_[i] - gamma_) / (zeta - gamma_);
        v[i] = std::log(p / (1.0f - p));
    }
    return v;
}

std::vector<double> AdaRoundProblem::loss_and_gradient(std::span<const float> v, float beta,
                                                       float lambda,
                                                       std::span<float> gradient) const {
    const size_t n = x_.size();
    std::vector<float> d(n), g(n, 0.0f);
    for (size_t i = 0; i < n; ++i) d[i] = x_[i] - (free_[i] ? floor_[i] + adaround_h(v[i]) : floor_[i]);
    ordered_gemm_accumulate(kernels_, size_, size_, d.data(), size_, h_.data(), size_, g.data(),
                            size_);
    std::vector<double> loss(static_cast<size_t>(kernels_), 0.0);
    for (size_t i = 0; i < n; ++i) {
        double& kernel_loss = loss[i / static_cast<size_t>(size_)];
        kernel_loss += static_cast<double>(d[i]) * g[i];
        gradient[i] = 0.0f;
        if (!free_[i]) continue;
        float dloss_dh = -2.0f * g[i];
        if (lambda > 0.0f) {
            const float centred = 2.0f * adaround_h(v[i]) - 1.0f;
            const float a = std::fabs(centred);
            const float power = std::pow(a, beta - 1.0f); // |2h - 1|^(beta - 1)
            kernel_loss += static_cast<double>(lambda) * (1.0 - static_cast<double>(power * a));
            dloss_dh += lambda * -2.0f * beta * power * (centred < 0.0f ? -1.0f : 1.0f);
        }
        gradient[i] = dloss_dh * h_slope(v[i]);
    }
    return loss;
}

std::vector<int32_t> AdaRoundProblem::codes(std::span<const float> v) const {
    std::vector<int32_t> q(x_.size());
    for (size_t i = 0; i < q.size(); ++i)
        q[i] = static_cast<int32_t>(floor_[i]) + (free_[i] && adaround_h(v[i]) >= 0.5f ? 1 : 0);
    return q;
}

std::vector<int32_t> AdaRoundProblem::nearest_codes() const {
    std::vector<int32_t> q(x_.size(), 0);
    const float qmax = static_cast<float>(qmax_);
    for (size_t i = 0; i < q.size(); ++i)
        if (scales_[i / static_cast<size_t>(size_)] != 0.0f)
            q[i] = static_cast<int32_t>(std::clamp(std::nearbyint(x_[i]), -qmax, qmax));
    return q;
}

double AdaRoundProblem::output_error(int64_t k, std::span<const int32_t> codes) const {
    std::vector<double> d(static_cast<size_t>(size_));
    for (int64_t i = 0; i < size_; ++i)
        d[static_cast<size_t>(i)] = static_cast<double>(x_[static_cast<size_t>(k * size_ + i)]) -
                                    codes[static_cast<size_t>(k * size_ + i)];
    double error = 0.0;
    for (int64_t i = 0; i < size_; ++i)
        for (int64_t j = 0; j < size_; ++j)
            error += d[static_cast<size_t>(i)] * moments_[static_cast<size_t>(i * size_ + j)] *
                     d[static_cast<size_t>(j)];
    return error;
}

namespace {

// beta and lambda at step t: no regulariser during the warm-up, then beta linearly from
// beta_start (first step after it) to beta_end (last step).
std::pair<float, float> schedule(const AdaRoundOptions& o, int t) {
    const int warm = static_cast<int>(static_cast<float>(o.iterations) * o.warmup);
    if (t < warm) return {o.beta_start, 0.0f};
    const int span = std::max(1, o.iterations - 1 - warm);
    const float progress = static_cast<float>(t - warm) / static_cast<float>(span);
    return {o.beta_end + (o.beta_start - o.beta_end) * (1.0f - progress), o.lambda};
}

std::vector<int32_t> optimise(const AdaRoundProblem& problem, const AdaRoundOptions& o) {
    constexpr float beta1 = 0.9f, beta2 = 0.999f, epsilon = 1e-8f;
    std::vector<float> v = problem.initial_v();
    std::vector<float> gradient(v.size()), m(v.size(), 0.0f), s(v.size(), 0.0f);
    float beta1_t = 1.0f, beta2_t = 1.0f;
    for (int t = 0; t < o.iterations; ++t) {
        const auto [beta, lambda] = schedule(o, t);
        problem.loss_and_gradient(v, beta, lambda, gradient);
        beta1_t *= beta1;
        beta2_t *= beta2;
        for (size_t i = 0; i < v.size(); ++i) {
            m[i] = beta1 * m[i] + (1.0f - beta1) * gradient[i];
            s[i] = beta2 * s[i] + (1.0f - beta2) * gradient[i] * gradient[i];
            const float m_hat = m[i] / (1.0f - beta1_t), s_hat = s[i] / (1.0f - beta2_t);
            v[i] -= o.learning_rate * m_hat / (std::sqrt(s_hat) + epsilon);
        }
    }
    std::vector<int32_t> codes = problem.codes(v);
    const std::vector<int32_t> nearest = problem.nearest_codes();
    const size_t size = static_cast<size_t>(problem.size());
    for (int64_t k = 0; k < problem.kernels(); ++k)
        if (problem.output_error(k, codes) > problem.output_error(k, nearest))
            std::copy_n(nearest.begin() + static_cast<std::ptrdiff_t>(k * problem.size()), size,
                        codes.begin() + static_cast<std::ptrdiff_t>(k * problem.size()));
    return codes;
}

} // namespace

std::vector<int32_t> adaround_codes(std::span<const float> weights, int64_t size,
                                    std::span<const float> scales, int bits,
                                    std::span<const double> moments,
                                    const AdaRoundOptions& options) {
    const int64_t kernels = static_cast<int64_t>(scales.size());
    if (size < 1 || static_cast<int64_t>(weights.size()) != kernels * size)
        throw Error("adaround: " + std::to_string(weights.size()) + " weights for " +
                    std::to_string(kernels) + " kernels of " + std::to_string(size));
    std::vector<int32_t> codes(weights.size());
    const int64_t blocks = (kernels + kernel_block - 1) / kernel_block;
    tbb::parallel_for(tbb::blocked_range<int64_t>(0, blocks), [&](const tbb::blocked_range<int64_t>& r) {
        for (int64_t b = r.begin(); b < r.end(); ++b) {
            const int64_t first = b * kernel_block, n = std::min(kernel_block, kernels - first);
            const AdaRoundProblem problem(weights.subspan(static_cast<size_t>(first * size),
                                                          static_cast<size_t>(n * size)),
                                          size, scales.subspan(static_cast<size_t>(first), static_cast<size_t>(n)),
                                          bits, moments);
            const std::vector<int32_t> block = optimise(problem, options);
            std::copy(block.begin(), block.end(), codes.begin() + first * size);
        }
    });
    return codes;
}

} // namespace mps
