// GateGrid::run's level mixes (policies/bayesian_bits/run_grid.h) against naive references: hard patterns are
// the evaluator's fake quantization bit for bit, gate gradients are exact differences of the
// multilinear mix, and the straight-through input gradient is the fake-quant layer's clip mask.
#include "evaluator/quant/activation_range.h"
#include "policies/bayesian_bits/run_grid.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <vector>

using namespace mps;

namespace {

std::vector<float> random_values(size_t n, float lo, float hi, uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::uniform_real_distribution<float> d(lo, hi);
    std::vector<float> v(n);
    for (float& x : v) x = d(rng);
    return v;
}

// Naive dL/dz_k of sum_i dy_i * x_q,i: the mix is linear in each gate, so the difference between
// gate k at 1 and at 0 is the derivative.
double gate_difference(const RunGridActivation& a, ResidualGates z, size_t k,
                       const std::vector<float>& x, const std::vector<float>& dy) {
    std::vector<float> hi(x.size()), lo(x.size());
    z[k] = 1.0f;
    a.forward(z, x.data(), hi.data(), int64_t(x.size()), nullptr);
    z[k] = 0.0f;
    a.forward(z, x.data(), lo.data(), int64_t(x.size()), nullptr);
    double sum = 0.0;
    for (size_t i = 0; i < x.size(); ++i) sum += double(dy[i]) * (double(hi[i]) - double(lo[i]));
    return sum;
}

} // namespace

TEST_CASE("run grid: activation levels, gate gradients and the straight-through mask") {
    const GateLevels levels{2, 3, 4, 6, 32};
    const std::array<float, residual_gate_count> ranges{0.9f, 1.3f, 1.7f, 2.2f, 0.0f};
    const size_t n = 40000; // more than one host chunk
    for (bool is_signed : {true, false}) {
        CAPTURE(is_signed);
        const RunGridActivation a(levels, ranges, is_signed);
        const std::vector<float> x = random_values(n, is_signed ? -2.5f : -0.2f, 2.5f, 7);
        const std::vector<float> dy = random_values(n, -1.0f, 1.0f, 8);

        // Hard patterns: exactly the fake quantization at the pattern's level.
        for (size_t last = 0; last < residual_gate_count; ++last) {
            ResidualGates z{};
            for (size_t k = 0; k <= last; ++k) z[k] = 1.0f;
            std::vector<float> got(n), want = x;
            a.forward(z, x.data(), got.data(), int64_t(n), nullptr);
            fake_quantize_activation(want.data(), int64_t(n), ranges[last], levels[last], is_signed);
            CAPTURE(levels[last]);
            CHECK(got == want);
        }

        // Relaxed gates: gate gradients against exact differences, dx against the clip masks.
        const ResidualGates z{0.8f, 0.6f, 0.3f, 0.9f, 0.5f};
        GateGradient dz{};
        std::vector<float> dx(n);
        a.backward(z, x.data(), dy.data(), dx.data(), int64_t(n), nullptr, dz);
        for (size_t k = 0; k < residual_gate_count; ++k) {
            CAPTURE(k);
            CHECK(dz[k] == doctest::Approx(gate_difference(a, z, k, x, dy)).epsilon(1e-4));
        }
        const std::array<float, residual_gate_count> weight = residual_level_weights(z);
        size_t clipped = 0;
        for (size_t i = 0; i < n; ++i) {
            float slope = 0.0f;
            for (size_t k = 0; k < residual_gate_count; ++k) {
                bool pass = true;
                if (levels[k] != 32) {
                    const float s = activation_scale(ranges[k], levels[k], is_signed);
                    const float qmax = float(activation_qmax(levels[k], is_signed));
                    pass = x[i] / s >= (is_signed ? -qmax : 0.0f) && x[i] / s <= qmax;
                }
                if (pass) slope += weight[k];
                else ++clipped;
            }
            CHECK(dx[i] == dy[i] * slope);
        }
        CHECK(clipped > 0); // some values lie outside some ranges

        // Padding: 0 forward, no gradient to x or the gates.
        std::vector<uint8_t> inside(n, 1);
        for (size_t i = 0; i < n; i += 3) inside[i] = 0;
        std::vector<float> y(n);
        a.forward(z, x.data(), y.data(), int64_t(n), inside.data());
        GateGradient masked{};
        a.backward(z, x.data(), dy.data(), dx.data(), int64_t(n), inside.data(), masked);
        std::vector<float> dy_masked = dy;
        for (size_t i = 0; i < n; i += 3) {
            CHECK(y[i] == 0.0f);
            CHECK(dx[i] == 0.0f);
            dy_masked[i] = 0.0f;
        }
        for (size_t k = 0; k < residual_gate_count; ++k)
            CHECK(masked[k] == doctest::Approx(gate_difference(a, z, k, x, dy_masked)).epsilon(1e-4));
    }
}

TEST_CASE("run grid: weight levels mix per unit, gate gradients and z_2 times the gradient") {
    const size_t n = 50;
    std::vector<std::vector<float>> storage;
    for (uint64_t k = 0; k < residual_gate_count; ++k) storage.push_back(random_values(n, -1, 1, 20 + k));
    std::vector<std::span<const float>> levels(storage.begin(), storage.end());
    const std::vector<float> grad = random_values(n, -1, 1, 30);
    const auto loss = [&](const ResidualGates& z) {
        std::vector<float> out(n);
        mix_weight_levels(levels, z, out);
        double sum = 0.0;
        for (size_t i = 0; i < n; ++i) sum += double(grad[i]) * out[i];
        return sum;
    };
    // Hard patterns pick one level.
    std::vector<float> out(n);
    mix_weight_levels(levels, ResidualGates{1, 1, 1, 0, 0}, out);
    CHECK(out == storage[2]);
    mix_weight_levels(levels, ResidualGates{0, 1, 1, 1, 1}, out);
    CHECK(out == std::vector<float>(n, 0.0f)); // pruned

    const ResidualGates z{0.7f, 0.4f, 0.9f, 0.2f, 0.6f};
    GateGradient dz{};
    std::vector<float> grad_w(n);
    weight_levels_backward(levels, z, grad, grad_w, dz);
    for (size_t k = 0; k < residual_gate_count; ++k) {
        ResidualGates hi = z, lo = z;
        hi[k] = 1.0f;
        lo[k] = 0.0f;
        CAPTURE(k);
        CHECK(dz[k] == doctest::Approx(loss(hi) - loss(lo)).epsilon(1e-5));
    }
    for (size_t i = 0; i < n; ++i) CHECK(grad_w[i] == grad[i] * z[0]);
}
