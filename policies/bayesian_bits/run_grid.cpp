// GateGrid::run's level mixes; the contract is in run_grid.h.
#include "policies/bayesian_bits/run_grid.h"

#include "evaluator/base/host_chunks.h"
#include "evaluator/quant/activation_range.h"

#include <algorithm>
#include <vector>

namespace mps {

namespace {

constexpr size_t gate_count = residual_gate_count;

// The residuals e_k = Q_k - Q_{k-1} of one element whose levels are level(k), k < count.
template <typename Level>
Residuals residuals_of(size_t count, Level level) {
    Residuals e{};
    float previous = 0.0f;
    for (size_t k = 0; k < count; ++k) {
        const float q = level(k);
        e[k] = q - previous;
        previous = q;
    }
    return e;
}

} // namespace

RunGridActivation::RunGridActivation(const GateLevels& levels,
                                     const std::array<float, residual_gate_count>& ranges,
                                     bool is_signed)
    : levels_(levels), ranges_(ranges), is_signed_(is_signed) {
    for (size_t k = 0; k < gate_count; ++k) clips_.emplace_back(ranges_[k], levels_[k], is_signed_);
}

void RunGridActivation::quantize_level(size_t k, const float* x, int64_t n, float* out) const {
    std::copy(x, x + n, out);
    fake_quantize_activation(out, n, ranges_[k], levels_[k], is_signed_);
}

void RunGridActivation::forward(const ResidualGates& z, const float* x, float* y, int64_t n,
                                const uint8_t* inside) const {
    const std::array<float, gate_count> weight = residual_level_weights(z);
    const int64_t tasks = host_chunk_count(n);
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
        const auto [begin, size] = host_chunk_at(t, n);
        std::vector<float> level(static_cast<size_t>(size));
        std::vector<float> sum(static_cast<size_t>(size), 0.0f); // y may alias x
        for (size_t k = 0; k < gate_count; ++k) {
            if (weight[k] == 0.0f) continue; // a hard pattern: exactly one level
            quantize_level(k, x + begin, size, level.data());
            for (size_t i = 0; i < level.size(); ++i) sum[i] += weight[k] * level[i];
        }
        for (int64_t i = 0; i < size; ++i)
            y[begin + i] = inside && !inside[begin + i] ? 0.0f : sum[size_t(i)];
    }
}

void RunGridActivation::backward(const ResidualGates& z, const float* x, const float* dy, float* dx,
                                 int64_t n, const uint8_t* inside, GateGradient& dz) const {
    const std::array<float, gate_count> weight = residual_level_weights(z);
    const size_t needed = residual_levels_needed(z); // levels above weigh 0 and move no gate
    const int64_t tasks = host_chunk_count(n);
    std::vector<GateGradient> partial(static_cast<size_t>(tasks), GateGradient{});
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
        const auto [begin, size] = host_chunk_at(t, n);
        std::vector<float> levels(static_cast<size_t>(size) * needed);
        for (size_t k = 0; k < needed; ++k)
            quantize_level(k, x + begin, size, levels.data() + k * size_t(size));
        GateGradient& sum = partial[static_cast<size_t>(t)];
        for (int64_t i = 0; i < size; ++i) {
            const float g = inside && !inside[begin + i] ? 0.0f : dy[begin + i];
            // `size` by init-capture: clang before 16 cannot capture a structured binding
            const Residuals e = residuals_of(needed, [&, size = size](size_t k) {
                return levels[k * size_t(size) + size_t(i)];
            });
            GateGradient element{};
            residual_gate_gradients(e, z, needed, element);
            float slope = 0.0f;
            for (size_t k = 0; k < needed; ++k)
                if (weight[k] != 0.0f && clips_[k].passes(x[begin + i])) slope += weight[k];
            for (size_t k = 0; k < gate_count; ++k) sum[k] += double(g) * element[k];
            dx[begin + i] = g * slope;
        }
    }
    for (const GateGradient& d : partial)
        for (size_t k = 0; k < gate_count; ++k) dz[k] += d[k];
}

void mix_weight_levels(std::span<const std::span<const float>> levels, const ResidualGates& z,
                       std::span<float> out) {
    const std::array<float, gate_count> weight = residual_level_weights(z);
    for (size_t i = 0; i < out.size(); ++i) {
        float sum = 0.0f;
        for (size_t k = 0; k < levels.size(); ++k)
            if (weight[k] != 0.0f) sum += weight[k] * levels[k][i];
        out[i] = sum;
    }
}

void weight_levels_backward(std::span<const std::span<const float>> levels, const ResidualGates& z,
                            std::span<const float> grad_out, std::span<float> grad_w,
                            GateGradient& dz) {
    for (size_t i = 0; i < grad_out.size(); ++i) {
        const Residuals e = residuals_of(levels.size(), [&](size_t k) { return levels[k][i]; });
        GateGradient element{};
        residual_gate_gradients(e, z, levels.size(), element);
        for (size_t k = 0; k < gate_count; ++k) dz[k] += double(grad_out[i]) * element[k];
        grad_w[i] = grad_out[i] * z[0];
    }
}

} // namespace mps
