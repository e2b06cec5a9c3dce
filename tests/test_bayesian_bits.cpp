// The numerical building blocks of Bayesian Bits (docs/policies.md, "bayesian_bits"): the nested
// residual quantizer against a plain affine quantizer written here from that definition, its
// straight-through backward against finite differences of its forward, and the hard-concrete
// gates and the BitOPs regularizer against finite differences and hand-computed values.
#include "evaluator/base/error.h"
#include "evaluator/quant/residual_quantizer.h"
#include "policies/bayesian_bits/hard_concrete.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <cmath>
#include <cstring>
#include <set>
#include <vector>

using namespace mps;
using test::round_half_even;

namespace {

// The paper's step recursion in float: s_2 = R / 3, s_{2b} = s_b / (2^b + 1).
float spec_step(float x_min, float x_max, int bits) {
    float s = (x_max - x_min) / 3.0f;
    for (int b = 2; b < bits; b *= 2) s /= static_cast<float>(std::pow(2.0, b) + 1.0);
    return s;
}

// The plain affine b-bit quantizer on [x_min, x_max] with that step; 0 for b = 0.
float plain_affine(float x, float x_min, float x_max, int bits) {
    if (bits == 0) return 0.0f;
    const float s = spec_step(x_min, x_max, bits);
    const float clamped = std::min(std::max(x, x_min), x_max);
    return x_min + s * round_half_even((clamped - x_min) / s);
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// Every hard gate vector: bit k of `pattern` opens gate k.
ResidualGates hard_pattern(unsigned pattern) {
    ResidualGates z{};
    for (size_t k = 0; k < residual_gate_count; ++k) z[k] = (pattern >> k) & 1u ? 1.0f : 0.0f;
    return z;
}

// The effective bits of a hard pattern, from the definition: the longest open chain from z_2.
int chain_bits(unsigned pattern) {
    int bits = 0;
    for (size_t k = 0; k < residual_gate_count && ((pattern >> k) & 1u); ++k)
        bits = residual_bits[k];
    return bits;
}

struct Range {
    float x_min, x_max;
};
// Signed (symmetric), unsigned, and an arbitrary learned range.
const std::vector<Range> ranges{{-1.0f, 1.0f}, {0.0f, 2.5f}, {-0.37f, 1.91f}, {-3.2f, 3.2f}};

// Values over a range, 20 % beyond each end (exercising the clamp), plus the ends themselves.
std::vector<float> values_over(const Range& r, test::Rng& rng, size_t n) {
    const float margin = 0.2f * (r.x_max - r.x_min);
    std::vector<float> x(n);
    for (float& v : x) v = rng.uniform(r.x_min - margin, r.x_max + margin);
    x.push_back(r.x_min);
    x.push_back(r.x_max);
    x.push_back(0.0f);
    return x;
}

double central_difference(const auto& f, double at, double h) {
    return (f(at + h) - f(at - h)) / (2.0 * h);
}

} // namespace

TEST_CASE("residual quantizer: all gates up to b equal the plain affine b-bit quantizer, bit for bit") {
    test::Rng rng(11);
    for (const Range& r : ranges) {
        const ResidualQuantizer q(r.x_min, r.x_max);
        std::vector<float> x = values_over(r, rng, 4000);
        for (int bits : {2, 4, 8, 16}) {
            // Points just at and around grid midpoints, where the rounding decides.
            const float s = spec_step(r.x_min, r.x_max, bits);
            for (int i = 0; i < 8; ++i) {
                const float mid = r.x_min + s * (static_cast<float>(i) + 0.5f);
                x.push_back(mid);
                x.push_back(std::nextafter(mid, r.x_max));
                x.push_back(std::nextafter(mid, r.x_min));
            }
        }
        for (unsigned pattern = 0; pattern < (1u << residual_gate_count); ++pattern) {
            CAPTURE(pattern);
            const ResidualGates z = hard_pattern(pattern);
            const int bits = chain_bits(pattern);
            CHECK(effective_bits(z) == bits);
            std::vector<float> got(x.size(), -123.0f), want(x.size());
            q.quantize(x, z, got);
            for (size_t i = 0; i < x.size(); ++i) want[i] = plain_affine(x[i], r.x_min, r.x_max, bits);
            CHECK(bitwise_equal(got, want));
        }
    }
}

TEST_CASE("residual quantizer: steps nest, levels are the affine b-bit grid, effective bits") {
    const ResidualQuantizer q(-0.37f, 1.91f);
    const double range = 1.91 - -0.37;
    for (int bits : {2, 4, 8, 16, 32}) {
        CAPTURE(bits);
        CHECK(q.step(bits) == spec_step(-0.37f, 1.91f, bits));
        CHECK(q.step(bits) == doctest::Approx(range / (std::pow(2.0, bits) - 1.0)).epsilon(1e-6));
    }
    // At 2 and 4 bits a dense sweep hits exactly 2^b levels, from x_min to (about) x_max.
    for (int bits : {2, 4}) {
        std::set<float> levels;
        for (int i = 0; i <= 10000; ++i)
            levels.insert(q.level(-0.5f + 2.6f * static_cast<float>(i) / 10000.0f, bits));
        CHECK(levels.size() == (size_t{1} << bits));
        CHECK(*levels.begin() == -0.37f);
        CHECK(*levels.rbegin() == doctest::Approx(1.91).epsilon(1e-6));
    }
    CHECK(ResidualQuantizer::symmetric(2.0f).x_min() == -2.0f);
    for (int bits : {0, 2, 4, 8, 16, 32}) CHECK(effective_bits(gates_for_bits(bits)) == bits);
    CHECK(effective_bits({1.0f, 0.5f, 0.2f, 0.0f, 1.0f}) == 8); // relaxed: open means z != 0
    CHECK(effective_bits({0.0f, 1.0f, 1.0f, 1.0f, 1.0f}) == 0);
    CHECK_THROWS_AS(gates_for_bits(3), Error);
    CHECK_THROWS_AS(effective_bits({1.0f, 1.5f, 0.0f, 0.0f, 0.0f}), Error);
    CHECK_THROWS_AS(ResidualQuantizer(1.0f, 1.0f), Error);
    CHECK_THROWS_AS(ResidualQuantizer(0.0f, NAN), Error);
    CHECK_THROWS_AS(q.step(6), Error);
    CHECK_THROWS_AS(q.quantize(0.1f, {1.0f, -0.1f, 0.0f, 0.0f, 0.0f}), Error);
}

TEST_CASE("residual quantizer: residuals are the spec's e_b, and the nested sum rebuilds the levels") {
    // By hand on [-1, 1]: s_2 = 2/3, s_4 = 2/15. x = 0.25: t = 1.25, t / s_2 = 1.875 -> 2, so
    // x_2 = -1 + 4/3 = 1/3; e_4 = s_4 * round((0.25 - 1/3) / s_4) = s_4 * round(-0.625) = -2/15.
    const ResidualQuantizer unit(-1.0f, 1.0f);
    const Residuals hand = unit.residuals(0.25f);
    CHECK(hand[0] == doctest::Approx(1.0 / 3.0).epsilon(1e-6));
    CHECK(hand[1] == doctest::Approx(-2.0 / 15.0).epsilon(1e-6));

    test::Rng rng(5);
    for (const Range& r : ranges) {
        const ResidualQuantizer q(r.x_min, r.x_max);
        int compared = 0;
        for (float x : values_over(r, rng, 2000)) {
            const Residuals e = q.residuals(x);
            // The paper's definition, in double: e_b = s_b * round((x - x_2 - e_4 - ...) / s_b).
            const double clamped = std::min(std::max(x, r.x_min), r.x_max);
            double sum = e[0];
            CHECK(e[0] == q.level(x, 2));
            for (size_t k = 1; k < 4; ++k) { // e_4, e_8, e_16 (e_32 is below float resolution)
                const double s = q.step(residual_bits[k]);
                const double arg = (clamped - sum) / s;
                if (std::fabs(arg - std::floor(arg) - 0.5) < 1e-2) break; // a near tie: skip
                CHECK(e[k] == doctest::Approx(s * std::nearbyint(arg)).epsilon(1e-2).scale(s));
                sum += e[k];
                ++compared;
            }
            // x_2 + e_4 + ... + e_b is the b-bit level (to rounding).
            double nested = 0.0;
            for (size_t k = 0; k < residual_gate_count; ++k) {
                nested += e[k];
                CHECK(nested == doctest::Approx(q.level(x, residual_bits[k])).epsilon(1e-6));
            }
        }
        CHECK(compared > 3000);
    }
}

TEST_CASE("residual quantizer: kernel-wise gates quantize each channel at its own bit-width") {
    test::Rng rng(3);
    const ResidualQuantizer q(-1.5f, 1.5f);
    const std::vector<int> channel_bits{0, 2, 4, 8, 16, 32};
    const size_t per_channel = 37;
    std::vector<ResidualGates> gates;
    for (int b : channel_bits) gates.push_back(gates_for_bits(b));
    std::vector<float> x(channel_bits.size() * per_channel);
    for (float& v : x) v = rng.uniform(-2.0f, 2.0f);
    std::vector<float> got(x.size()), want(x.size());
    q.quantize_per_channel(x, gates, got);
    for (size_t c = 0; c < channel_bits.size(); ++c)
        for (size_t i = c * per_channel; i < (c + 1) * per_channel; ++i)
            want[i] = plain_affine(x[i], -1.5f, 1.5f, channel_bits[c]);
    CHECK(bitwise_equal(got, want));
    // In place.
    std::vector<float> inplace = x;
    q.quantize_per_channel(inplace, gates, inplace);
    CHECK(bitwise_equal(inplace, want));
    std::vector<float> too_short(x.size() - 1);
    CHECK_THROWS_AS(q.quantize_per_channel(std::span<const float>(x).first(x.size() - 1), gates,
                                           too_short),
                    Error);
    CHECK_THROWS_AS(q.quantize(x, gates[0], too_short), Error);
}

TEST_CASE("residual quantizer: straight-through backward against finite differences") {
    const ResidualQuantizer q(-1.0f, 1.0f);
    // d x_q / d x: 1 inside the clipping range (ends included), 0 outside, for open z_2.
    for (int bits : {2, 4, 8, 16, 32}) {
        const ResidualGates z = gates_for_bits(bits);
        for (float x : {-1.0f, -0.999f, -0.3f, 0.0f, 0.41f, 1.0f}) CHECK(q.grad_x(x, z) == 1.0f);
        for (float x : {-1.0001f, -7.0f, 1.0001f, 3.0f}) CHECK(q.grad_x(x, z) == 0.0f);
    }
    CHECK(q.grad_x(0.3f, gates_for_bits(0)) == 0.0f);             // pruned
    CHECK(q.grad_x(0.3f, {0.25f, 1.0f, 0.5f, 0.0f, 0.0f}) == 0.25f); // relaxed: slope z_2

    // d x_q / d z_k: x_q is multilinear in z, so a central difference is exact up to rounding.
    test::Rng rng(7);
    for (int trial = 0; trial < 200; ++trial) {
        const float x = rng.uniform(-1.2f, 1.2f);
        ResidualGates z{};
        for (float& g : z) g = rng.uniform(0.05f, 0.95f);
        if (trial % 4 == 0) z[trial / 4 % residual_gate_count] = trial % 8 == 0 ? 0.0f : 1.0f;
        const std::array<double, residual_gate_count> grad = q.grad_gates(x, z);
        for (size_t k = 0; k < residual_gate_count; ++k) {
            CAPTURE(trial);
            CAPTURE(k);
            const auto forward = [&](double value) {
                ResidualGates moved = z;
                moved[k] = static_cast<float>(value);
                return static_cast<double>(q.quantize(x, moved));
            };
            const double h = std::min({0.05, double(z[k]), 1.0 - double(z[k])});
            const double fd = h > 0 ? central_difference(forward, z[k], h)
                                    : (z[k] == 0.0f ? (forward(0.05) - forward(0.0)) / 0.05
                                                    : (forward(1.0) - forward(0.95)) / 0.05);
            // The forward is float: with 2h >= 0.1 its rounding moves fd by up to ~1e-6.
            CHECK(std::fabs(grad[k] - fd) < 1e-5 + 1e-4 * std::fabs(fd));
        }
    }
    // A hand case: all gates open, d x_q / d z_2 = x_q, d x_q / d z_32 = e_32.
    const ResidualGates open = gates_for_bits(32);
    CHECK(q.grad_gates(0.3f, open)[0] == doctest::Approx(q.quantize(0.3f, open)).epsilon(1e-6));
    CHECK(q.grad_gates(0.3f, open)[1] == doctest::Approx(q.level(0.3f, 32) - q.level(0.3f, 2)).epsilon(1e-6));
    // Closed z_8: the gates above it get no gradient; z_8 gets e_8 + z_16 (e_16 + z_32 e_32).
    const ResidualGates mid{1.0f, 1.0f, 0.0f, 1.0f, 1.0f};
    CHECK(q.grad_gates(0.3f, mid)[3] == 0.0);
    CHECK(q.grad_gates(0.3f, mid)[4] == 0.0);
    CHECK(q.grad_gates(0.3f, mid)[2] == doctest::Approx(q.level(0.3f, 32) - q.level(0.3f, 4)).epsilon(1e-6));
}

TEST_CASE("residual gate gradients: any family of levels, against finite differences") {
    // Levels that do not nest (any b-bit quantizers): x_q = sum_k weight_k(z) Q_k.
    const std::array<float, residual_gate_count> q{-0.7f, 0.4f, 0.35f, 0.351f, 0.3512f};
    const auto mixed = [&](const ResidualGates& z) {
        const std::array<float, residual_gate_count> w = residual_level_weights(z);
        double sum = 0.0;
        for (size_t k = 0; k < residual_gate_count; ++k) sum += double(w[k]) * q[k];
        return sum;
    };
    Residuals e{};
    for (size_t k = 0; k < residual_gate_count; ++k) e[k] = q[k] - (k == 0 ? 0.0f : q[k - 1]);
    for (const ResidualGates& z : {ResidualGates{0.9f, 0.3f, 0.6f, 0.2f, 0.5f},
                                   ResidualGates{1.0f, 1.0f, 0.0f, 0.0f, 0.0f},
                                   ResidualGates{0.5f, 0.25f, 0.75f, 1.0f, 0.125f}}) {
        std::array<double, residual_gate_count> dz{};
        residual_gate_gradients(e, z, residual_gate_count, dz);
        for (size_t k = 0; k < residual_gate_count; ++k) {
            CAPTURE(k);
            // x_q is multilinear in z: a difference of two gate values is exact up to rounding.
            ResidualGates lo = z, hi = z;
            lo[k] = 0.0f;
            hi[k] = 1.0f;
            CHECK(dz[k] == doctest::Approx(mixed(hi) - mixed(lo)).epsilon(1e-5).scale(1e-6));
        }
    }
    // A hard pattern gives exactly one level.
    CHECK(float(mixed(gates_for_bits(8))) == q[2]);
    CHECK(float(mixed(gates_for_bits(2))) == q[0]);
    CHECK(mixed(gates_for_bits(0)) == 0.0);
}

TEST_CASE("residual quantizer: backward_per_channel chains the scalar gradients") {
    test::Rng rng(9);
    const ResidualQuantizer q(-1.0f, 1.0f);
    const std::vector<ResidualGates> gates{{1.0f, 0.7f, 0.2f, 0.0f, 0.0f},
                                           {0.4f, 1.0f, 1.0f, 0.9f, 0.1f}};
    std::vector<float> x(2 * 11), grad_out(x.size());
    for (float& v : x) v = rng.uniform(-1.3f, 1.3f);
    for (float& v : grad_out) v = rng.uniform(-1.0f, 1.0f);
    std::vector<float> grad_x(x.size());
    std::vector<std::array<double, residual_gate_count>> grad_z(2, {1.0, 0, 0, 0, 0});
    q.backward_per_channel(x, gates, grad_out, grad_x, grad_z);
    for (size_t c = 0; c < 2; ++c) {
        std::array<double, residual_gate_count> want{1.0, 0, 0, 0, 0}; // accumulates onto it
        for (size_t i = c * 11; i < (c + 1) * 11; ++i) {
            CHECK(grad_x[i] == grad_out[i] * q.grad_x(x[i], gates[c]));
            const auto g = q.grad_gates(x[i], gates[c]);
            for (size_t k = 0; k < residual_gate_count; ++k) want[k] += double(grad_out[i]) * g[k];
        }
        for (size_t k = 0; k < residual_gate_count; ++k)
            CHECK(grad_z[c][k] == doctest::Approx(want[k]).epsilon(1e-12));
    }
    grad_z.pop_back();
    CHECK_THROWS_AS(q.backward_per_channel(x, gates, grad_out, grad_x, grad_z), Error);
}

TEST_CASE("hard concrete: sample and probability gradients against finite differences") {
    const double h = 1e-5;
    for (double log_alpha : {-6.0, -2.0, -0.5, 0.0, 0.7, 3.0, 6.0}) {
        CAPTURE(log_alpha);
        const double p = probability_on(log_alpha);
        CHECK(p + probability_off(log_alpha) == doctest::Approx(1.0).epsilon(1e-14));
        const double fd_p = central_difference(probability_on, log_alpha, h);
        CHECK(probability_on_derivative(log_alpha) == doctest::Approx(fd_p).epsilon(1e-7));
        int interior = 0;
        for (double u : {1e-4, 0.01, 0.2, 0.37, 0.5, 0.64, 0.9, 0.999}) {
            CAPTURE(u);
            const GateSample s = sample_gate(u, log_alpha);
            CHECK(s.z >= 0.0);
            CHECK(s.z <= 1.0);
            const auto z_of = [u](double la) { return sample_gate(u, la).z; };
            const double lo = z_of(log_alpha - h), hi = z_of(log_alpha + h);
            if (lo == 0.0 || hi == 1.0 || lo == 1.0 || hi == 0.0) { // clamped nearby
                if (s.z == 0.0 || s.z == 1.0) CHECK(s.dz_dlog_alpha == 0.0);
                continue;
            }
            CHECK(s.dz_dlog_alpha == doctest::Approx(central_difference(z_of, log_alpha, h)).epsilon(1e-6));
            CHECK(s.dz_dlog_alpha > 0.0);
            ++interior;
        }
        if (std::fabs(log_alpha) < 1.0) CHECK(interior > 0);
    }
    CHECK_THROWS_AS(sample_gate(0.0, 1.0), Error);
    CHECK_THROWS_AS(sample_gate(1.0, 1.0), Error);
}

TEST_CASE("hard concrete: q(z > 0) is the fraction of noise that opens the gate") {
    // u on a fine uniform grid stands for U(0, 1): the share of samples with z > 0 must be
    // sigmoid(log_alpha - beta log(-gamma / zeta)) to within the grid's resolution.
    const int n = 200000;
    for (double log_alpha : {-3.0, -1.0, 0.0, 2.0}) {
        int on = 0;
        for (int i = 0; i < n; ++i)
            on += sample_gate((i + 0.5) / n, log_alpha).z > 0.0 ? 1 : 0;
        CAPTURE(log_alpha);
        CHECK(std::fabs(static_cast<double>(on) / n - probability_on(log_alpha)) < 2e-5);
    }
    // The constants by hand: log_alpha = 0 gives sigmoid(-(2/3) log(1/11)) = sigmoid(1.5985969).
    CHECK(probability_on(0.0) == doctest::Approx(1.0 / (1.0 + std::exp(-1.5985969))).epsilon(1e-7));
}

TEST_CASE("bit regularizer: value by the spec's formula, gradient against finite differences") {
    const std::vector<GateLogits> units{{0.3, 1.2, -0.4, -2.0, 0.8},
                                        {6.0, 6.0, 6.0, -6.0, -6.0},
                                        {-1.1, 0.0, 2.5, 1.0, -0.3}};
    const double m = 0.37;
    for (bool prunable : {true, false}) {
        CAPTURE(prunable);
        const BitRegularizer r = bit_regularizer(units, m, prunable);
        // The definition's sum, term by term.
        double want = 0.0;
        for (const GateLogits& la : units) {
            const double p2 = prunable ? probability_on(la[0]) : 1.0;
            const double p4 = probability_on(la[1]), p8 = probability_on(la[2]);
            const double p16 = probability_on(la[3]), p32 = probability_on(la[4]);
            want += m * 2 * p2 + p2 * m * 4 * p4 + p2 * p4 * m * 8 * p8 +
                    p2 * p4 * p8 * m * 16 * p16 + p2 * p4 * p8 * p16 * m * 32 * p32;
        }
        want /= static_cast<double>(units.size());
        CHECK(r.value == doctest::Approx(want).epsilon(1e-13));
        REQUIRE(r.grad.size() == units.size());
        for (size_t u = 0; u < units.size(); ++u)
            for (size_t k = 0; k < residual_gate_count; ++k) {
                CAPTURE(u);
                CAPTURE(k);
                const auto value_at = [&](double la) {
                    std::vector<GateLogits> moved = units;
                    moved[u][k] = la;
                    return bit_regularizer(moved, m, prunable).value;
                };
                const double fd = central_difference(value_at, units[u][k], 1e-5);
                CHECK(r.grad[u][k] == doctest::Approx(fd).epsilon(1e-6).scale(1e-9));
                if (k == 0 && !prunable) CHECK(r.grad[u][k] == 0.0);
            }
    }
    // Without pruning and with every residual closed for good, only the constant c_2 is left.
    const std::vector<GateLogits> closed{{-50.0, -50.0, -50.0, -50.0, -50.0}};
    CHECK(bit_regularizer(closed, 0.5, false).value == doctest::Approx(0.5 * 2).epsilon(1e-12));
    CHECK(bit_regularizer(closed, 0.5, true).value < 1e-12);
    const std::vector<GateLogits> open{{50.0, 50.0, 50.0, 50.0, 50.0}};
    CHECK(bit_regularizer(open, 0.5, true).value == doctest::Approx(0.5 * 62).epsilon(1e-12));
    CHECK_THROWS_AS(bit_regularizer({}, 1.0, true), Error);
    CHECK_THROWS_AS(bit_regularizer(open, 0.0, true), Error);
}

namespace {

// E[effective bits] of one chain by enumerating the 2^5 on/off patterns of independent gates.
double enumerated_expected_bits(const GateLogits& la, bool prunable) {
    double sum = 0.0;
    for (unsigned pattern = 0; pattern < (1u << residual_gate_count); ++pattern) {
        double probability = 1.0;
        ResidualGates z{};
        for (size_t k = 0; k < residual_gate_count; ++k) {
            const bool on = (pattern >> k) & 1u;
            const double p = k == 0 && !prunable ? 1.0 : probability_on(la[k]);
            probability *= on ? p : 1.0 - p;
            z[k] = on ? 1.0f : 0.0f;
        }
        sum += probability * effective_bits(z);
    }
    return sum;
}

} // namespace

TEST_CASE("expected bits and the BitOPs regularizer: enumeration and finite differences") {
    const std::vector<GateLogits> units{{0.3, 1.2, -0.4, -2.0, 0.8},
                                        {6.0, 6.0, 6.0, -6.0, -6.0},
                                        {-1.1, 0.0, 2.5, 1.0, -0.3}};
    const GateLogits activation{30.0, 0.7, -1.5, -4.0, 2.0}; // z_2 is never learned
    const double m = 0.37;
    for (bool prunable : {true, false}) {
        CAPTURE(prunable);
        for (const GateLogits& la : units)
            CHECK(expected_bits(la, prunable).value ==
                  doctest::Approx(enumerated_expected_bits(la, prunable)).epsilon(1e-12));
        // A hard chain costs exactly its bits.
        for (int bits : {2, 4, 8, 16, 32}) {
            GateLogits hard{};
            const ResidualGates z = gates_for_bits(bits);
            for (size_t k = 0; k < residual_gate_count; ++k) hard[k] = z[k] != 0.0f ? 60.0 : -60.0;
            CHECK(expected_bits(hard, prunable).value == doctest::Approx(bits).epsilon(1e-12));
        }
        // R_l = (m / 8) * mean weight bits * activation bits, by enumeration.
        double w = 0.0;
        for (const GateLogits& la : units) w += enumerated_expected_bits(la, prunable) / units.size();
        const LayerBitops r = bitops_regularizer(units, prunable, activation, m);
        CHECK(r.value == doctest::Approx(m / 8 * w * enumerated_expected_bits(activation, false))
                             .epsilon(1e-12));
        REQUIRE(r.weight_grad.size() == units.size());
        for (size_t k = 0; k < residual_gate_count; ++k) {
            CAPTURE(k);
            for (size_t u = 0; u < units.size(); ++u) {
                CAPTURE(u);
                const auto value_at = [&](double la) {
                    std::vector<GateLogits> moved = units;
                    moved[u][k] = la;
                    return bitops_regularizer(moved, prunable, activation, m).value;
                };
                CHECK(r.weight_grad[u][k] ==
                      doctest::Approx(central_difference(value_at, units[u][k], 1e-5))
                          .epsilon(1e-6)
                          .scale(1e-9));
                if (k == 0 && !prunable) CHECK(r.weight_grad[u][k] == 0.0);
            }
            const auto activation_at = [&](double la) {
                GateLogits moved = activation;
                moved[k] = la;
                return bitops_regularizer(units, prunable, moved, m).value;
            };
            CHECK(r.activation_grad[k] ==
                  doctest::Approx(central_difference(activation_at, activation[k], 1e-5))
                      .epsilon(1e-6)
                      .scale(1e-9));
        }
    }
    CHECK_THROWS_AS(bitops_regularizer({}, true, activation, 1.0), Error);
    CHECK_THROWS_AS(bitops_regularizer(units, true, activation, 0.0), Error);
}

TEST_CASE("hard concrete: thresholding and initial logits, by hand") {
    // On when q(z = 0) < 0.34: log_alpha > log(0.66 / 0.34) + (2/3) log(0.1 / 1.1) = -0.935303.
    CHECK(gate_is_on(-0.9352));
    CHECK_FALSE(gate_is_on(-0.9354));
    CHECK(probability_off(-0.935303) == doctest::Approx(0.34).epsilon(1e-5));
    CHECK(gate_is_on(6.0));
    CHECK_FALSE(gate_is_on(-6.0));

    CHECK(thresholded_bits({6, 6, -6, 6, 6}, true) == 4); // z_8 closed closes z_16, z_32
    CHECK(thresholded_bits({6, 6, 6, 6, 6}, true) == 32);
    CHECK(thresholded_bits({-6, 6, 6, 6, 6}, true) == 0);  // pruned
    CHECK(thresholded_bits({-6, 6, 6, 6, 6}, false) == 32); // activations are never pruned
    CHECK(thresholded_bits({-6, -6, 6, 6, 6}, false) == 2);
    CHECK(thresholded_bits({6, -0.9352, -0.9354, 6, 6}, true) == 4);
    CHECK(thresholded_bits({6, -0.9354, 6, 6, 6}, true) == 2);
    CHECK(thresholded_gates({6, 6, 6, -1, 6}, true) == ResidualGates{1, 1, 1, 0, 0});

    CHECK(initial_log_alpha(8) == GateLogits{6, 6, 6, -6, -6});
    CHECK(initial_log_alpha(2) == GateLogits{6, -6, -6, -6, -6});
    CHECK(initial_log_alpha(32) == GateLogits{6, 6, 6, 6, 6});
    for (int bits : {2, 4, 8, 16, 32}) CHECK(thresholded_bits(initial_log_alpha(bits), true) == bits);
    CHECK_THROWS_AS(initial_log_alpha(0), Error);
    CHECK_THROWS_AS(initial_log_alpha(5), Error);
}

namespace {

// The straight-through surrogate of x_q as a function of x_max' around the quantizer's x_max, from
// the definition in double: every level's rounding is frozen at its base-point code q0 and
// replaced by the identity, Q_b(x_max') = lo' + s_b' * (q0 + v' - v0) with lo' = -x_max'
// (symmetric) or the fixed x_min, s_b' = (x_max' - lo') / (2^b - 1),
// v' = (clamp(x, lo', x_max') - lo') / s_b', and v0 = v' at the base point;
// x_q = sum_b (P_b - P_{2b}) Q_b.
double range_surrogate(const ResidualQuantizer& q, float x, const ResidualGates& z, double x_max) {
    const bool symmetric = q.x_min() == -q.x_max();
    const auto grid = [&](double top, int bits) {
        const double lo = symmetric ? -top : double(q.x_min());
        const double step = (top - lo) / (std::pow(2.0, bits) - 1.0);
        const double v = (std::min(std::max(double(x), lo), top) - lo) / step;
        return std::array<double, 3>{lo, step, v};
    };
    double sum = 0.0, chain = 1.0;
    for (size_t k = 0; k < residual_gate_count; ++k) {
        const double weight = chain * z[k] * (1.0 - (k + 1 < residual_gate_count ? z[k + 1] : 0.0));
        chain *= z[k];
        const int bits = residual_bits[k];
        // The forward's code: one float division of clamp(x) - x_min by the float step.
        const float t = std::min(std::max(x, q.x_min()), q.x_max()) - q.x_min();
        const double q0 = round_half_even(t / q.step(bits));
        const double v0 = grid(q.x_max(), bits)[2];
        const auto [lo, step, v] = grid(x_max, bits);
        sum += weight * (lo + step * (q0 + v - v0));
    }
    return sum;
}

} // namespace

TEST_CASE("residual quantizer: range gradient against finite differences of the STE surrogate") {
    test::Rng rng(21);
    // Gate patterns: every hard one, relaxed ones in (0, 1), relaxed ones with a hard gate mixed in.
    std::vector<ResidualGates> patterns;
    for (unsigned pattern = 0; pattern < (1u << residual_gate_count); ++pattern)
        patterns.push_back(hard_pattern(pattern));
    for (int i = 0; i < 16; ++i) {
        ResidualGates z{};
        for (float& g : z) g = rng.uniform(0.02f, 0.98f);
        if (i % 2 == 1)
            z[static_cast<size_t>(i / 2) % residual_gate_count] = i % 4 == 1 ? 1.0f : 0.0f;
        patterns.push_back(z);
    }
    // Symmetric (x_min follows x_max), unsigned (x_min = 0 fixed), and a fixed asymmetric x_min.
    for (const Range& r : std::vector<Range>{{-1.3f, 1.3f}, {0.0f, 2.5f}, {-0.37f, 1.91f}}) {
        const ResidualQuantizer q(r.x_min, r.x_max);
        const float width = r.x_max - r.x_min;
        const double h = 1e-3 * width;
        int regions[3] = {0, 0, 0}; // below, inside, above
        for (int i = 0; i < 60; ++i) {
            const int region = i % 3;
            // At least 1 % of the range from either end, so the clamp does not switch within +-h.
            const float near = 0.01f * width, far = 0.5f * width;
            const float x = region == 0   ? rng.uniform(r.x_min - far, r.x_min - near)
                            : region == 1 ? rng.uniform(r.x_min + near, r.x_max - near)
                                          : rng.uniform(r.x_max + near, r.x_max + far);
            ++regions[region];
            for (size_t p = 0; p < patterns.size(); ++p) {
                const ResidualGates& z = patterns[p];
                CAPTURE(r.x_min);
                CAPTURE(x);
                CAPTURE(p);
                const auto f = [&](double top) { return range_surrogate(q, x, z, top); };
                const double fd = central_difference(f, r.x_max, h);
                // Float steps and codes against the double surrogate: v differs by a few 1e-7
                // relative, which moves s_b' * (q - v) by about 1e-6 at any b.
                CHECK(std::fabs(q.grad_range(x, z) - fd) < 3e-6 + 1e-5 * std::fabs(fd));
            }
        }
        CHECK(regions[0] + regions[1] + regions[2] == 60);
    }
}

TEST_CASE("residual quantizer: range gradient by hand at and beyond the ends") {
    const ResidualQuantizer sym = ResidualQuantizer::symmetric(1.0f), unsig(0.0f, 2.0f);
    CHECK(sym.is_symmetric());
    CHECK_FALSE(unsig.is_symmetric());
    CHECK_FALSE(ResidualQuantizer(-1.0f, 2.0f).is_symmetric());
    const ResidualGates relaxed{0.6f, 0.3f, 0.9f, 0.0f, 1.0f};
    for (int bits : {2, 4, 8, 16, 32}) {
        const ResidualGates z = gates_for_bits(bits);
        // Clipped above: x_q = x_max. Below: x_q = x_min, which moves only when symmetric.
        CHECK(sym.grad_range(1.5f, z) == 1.0f);
        CHECK(sym.grad_range(-1.5f, z) == -1.0f);
        CHECK(unsig.grad_range(2.5f, z) == 1.0f);
        CHECK(unsig.grad_range(-0.5f, z) == 0.0f);
        // The ends count as inside (like d/dx); there the code equals v, so the slope is ~0.
        CHECK(std::fabs(sym.grad_range(1.0f, z)) < 1e-6);
        CHECK(std::fabs(sym.grad_range(-1.0f, z)) < 1e-6);
    }
    // Relaxed gates: the telescoped weights sum to z_2.
    CHECK(sym.grad_range(3.0f, relaxed) == doctest::Approx(0.6).epsilon(1e-6));
    CHECK(sym.grad_range(-3.0f, relaxed) == doctest::Approx(-0.6).epsilon(1e-6));
    CHECK(sym.grad_range(3.0f, gates_for_bits(0)) == 0.0f); // pruned
    CHECK(sym.grad_range(0.2f, gates_for_bits(0)) == 0.0f);
    // By hand at 2 bits on [-1, 1]: s_2 = 2/3, x = 0.25: t = 1.25, v = 1.875, q = 2,
    // s_2' = 2/3 (both ends move), d Q_2 / d x_max = (2/3) * 0.125 = 1/12. Unsigned [0, 2]:
    // x = 0.25: v = 0.375, q = 0, s_2' = 1/3, slope = -0.125.
    CHECK(sym.grad_range(0.25f, gates_for_bits(2)) == doctest::Approx(1.0 / 12.0).epsilon(1e-6));
    CHECK(unsig.grad_range(0.25f, gates_for_bits(2)) == doctest::Approx(-0.125).epsilon(1e-6));
    CHECK_THROWS_AS(sym.grad_range(0.1f, {1.0f, 1.2f, 0.0f, 0.0f, 0.0f}), Error);
}

TEST_CASE("residual quantizer: backward_per_channel accumulates the range gradient per channel") {
    test::Rng rng(23);
    for (const Range& r : std::vector<Range>{{-1.0f, 1.0f}, {0.0f, 1.5f}}) {
        const ResidualQuantizer q(r.x_min, r.x_max);
        const std::vector<ResidualGates> gates{{1.0f, 0.7f, 0.2f, 0.0f, 0.0f},
                                               {0.4f, 1.0f, 1.0f, 0.9f, 0.1f},
                                               gates_for_bits(4)};
        const size_t per_channel = 13;
        std::vector<float> x(gates.size() * per_channel), grad_out(x.size());
        for (float& v : x) v = rng.uniform(r.x_min - 0.4f, r.x_max + 0.4f);
        for (float& v : grad_out) v = rng.uniform(-1.0f, 1.0f);
        std::vector<float> grad_x(x.size()), grad_x_plain(x.size());
        using GateGrad = std::array<double, residual_gate_count>;
        std::vector<GateGrad> grad_z(gates.size()), grad_z_plain(gates.size());
        std::vector<double> grad_range{0.5, -0.25, 2.0}; // accumulates onto these
        q.backward_per_channel(x, gates, grad_out, grad_x, grad_z, grad_range);
        q.backward_per_channel(x, gates, grad_out, grad_x_plain, grad_z_plain);
        CHECK(bitwise_equal(grad_x, grad_x_plain)); // the range gradient changes nothing else
        CHECK(grad_z == grad_z_plain);
        const std::vector<double> start{0.5, -0.25, 2.0};
        for (size_t c = 0; c < gates.size(); ++c) {
            double want = 0.0;
            for (size_t i = c * per_channel; i < (c + 1) * per_channel; ++i)
                want += double(grad_out[i]) * double(q.grad_range(x[i], gates[c]));
            CAPTURE(c);
            CHECK(grad_range[c] - start[c] == doctest::Approx(want).epsilon(1e-6).scale(1e-6));
        }
        // Several channels, one per-tensor call: the sum of a whole-tensor call.
        std::vector<double> total{0.0};
        std::vector<GateGrad> one(1, GateGrad{});
        q.backward_per_channel(x, std::span<const ResidualGates>(gates).first(1), grad_out, grad_x,
                               one, total);
        double want = 0.0;
        for (size_t i = 0; i < x.size(); ++i)
            want += double(grad_out[i]) * double(q.grad_range(x[i], gates[0]));
        CHECK(total[0] == doctest::Approx(want).epsilon(1e-6).scale(1e-6));
    }
}

TEST_CASE("residual quantizer: backward_per_channel rejects a grad_range of the wrong size") {
    const ResidualQuantizer q(-1.0f, 1.0f);
    const std::vector<ResidualGates> gates{gates_for_bits(8), gates_for_bits(2)};
    std::vector<float> x(8, 0.3f), grad_out(8, 1.0f), grad_x(8);
    std::vector<std::array<double, residual_gate_count>> grad_z(2);
    std::vector<double> wrong(3, 0.0), right(2, 0.0);
    CHECK_THROWS_WITH_AS(q.backward_per_channel(x, gates, grad_out, grad_x, grad_z, wrong),
                         doctest::Contains("grad_range has 3 entries for 2 gate vectors"), Error);
    CHECK(wrong == std::vector<double>(3, 0.0)); // nothing written before the check
    std::vector<double> one(1, 0.0);
    CHECK_THROWS_AS(q.backward_per_channel(x, gates, grad_out, grad_x, grad_z, one), Error);
    CHECK_NOTHROW(q.backward_per_channel(x, gates, grad_out, grad_x, grad_z, right));
    CHECK_NOTHROW(q.backward_per_channel(x, gates, grad_out, grad_x, grad_z));
}
