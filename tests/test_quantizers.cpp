// Weight quantizers against naive references written here from docs/semantics.md and
// docs/quantizers.md (ties, zero kernels, 1-bit, 0-bit, 32-bit), their optimality properties, the
// registry, and the activation side: fake quantization, calibration rules and signedness from
// graph structure.
#include "evaluator/base/error.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/quantizer.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <set>
#include <vector>

using namespace mps;
using test::round_half_even;

namespace {

// The uniform weight rule (docs/quantizers.md), naively.
std::vector<float> naive_uniform(const std::vector<float>& w, int bits) {
    std::vector<float> out(w.size(), 0.0f);
    if (bits == 0) return out;
    if (bits == 32) return w;
    if (bits == 1) {
        double sum = 0;
        for (float v : w) sum += std::fabs(v);
        const float mean = static_cast<float>(sum / static_cast<double>(w.size()));
        for (size_t i = 0; i < w.size(); ++i) out[i] = w[i] < 0 ? -mean : mean;
        return out;
    }
    float max_abs = 0;
    for (float v : w) max_abs = std::max(max_abs, std::fabs(v));
    const float qmax = static_cast<float>(std::pow(2, bits - 1) - 1);
    const float s = max_abs / qmax;
    if (s == 0) return out;
    for (size_t i = 0; i < w.size(); ++i) {
        float q = round_half_even(w[i] / s);
        q = std::min(std::max(q, -qmax), qmax);
        out[i] = s * q;
    }
    return out;
}

std::vector<float> run(const std::string& name, const std::vector<float>& w, int bits,
                       const QuantizerArgs& args = {}) {
    auto q = make_weight_quantizer(name, args);
    std::vector<float> out(w.size(), -123.0f);
    q->quantize_kernel(w, bits, out);
    return out;
}

double squared_error(const std::vector<float>& a, const std::vector<float>& b) {
    double e = 0;
    for (size_t i = 0; i < a.size(); ++i) e += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    return e;
}

std::vector<float> random_kernel(test::Rng& rng, size_t n, float lo = -1.0f, float hi = 1.0f) {
    std::vector<float> w(n);
    for (float& v : w) v = rng.uniform(lo, hi);
    return w;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

const std::vector<int> all_bits{0, 1, 2, 3, 4, 5, 6, 7, 8, 16, 32};

} // namespace

TEST_CASE("quantizers: uniform matches the naive spec rule on random kernels, every bit-width") {
    test::Rng rng(3);
    for (int trial = 0; trial < 40; ++trial) {
        const auto w = random_kernel(rng, 1 + static_cast<size_t>(trial) * 7,
                                     -0.3f * (trial + 1), 0.2f * (trial + 1));
        for (int bits : all_bits) {
            CAPTURE(bits);
            CHECK(bitwise_equal(run("uniform", w, bits), naive_uniform(w, bits)));
        }
    }
}

// The mse rule (docs/quantizers.md), naively: every clipping ratio of the grid, the least squared
// error in double, ties to the larger ratio.
std::vector<float> naive_mse(const std::vector<float>& w, int bits, int grid = 51) {
    if (bits == 0 || bits == 1 || bits == 32) return naive_uniform(w, bits);
    float max_abs = 0;
    for (float v : w) max_abs = std::max(max_abs, std::fabs(v));
    const float qmax = static_cast<float>(std::pow(2, bits - 1) - 1);
    std::vector<float> best;
    double best_error = std::numeric_limits<double>::infinity();
    for (int i = 0; i < grid; ++i) {
        const float s = (max_abs / qmax) * (1.0f - static_cast<float>(i) / 100.0f);
        std::vector<float> out(w.size(), 0.0f);
        for (size_t j = 0; j < w.size() && s > 0; ++j)
            out[j] = s * std::min(std::max(round_half_even(w[j] / s), -qmax), qmax);
        const double e = squared_error(w, out);
        if (e < best_error) best_error = e, best = out;
    }
    return best;
}

TEST_CASE("quantizers: mse matches the naive clipping search and never has more error than uniform") {
    test::Rng rng(5);
    for (int trial = 0; trial < 30; ++trial) {
        auto w = random_kernel(rng, 9 + static_cast<size_t>(trial) * 11, -0.5f, 0.5f);
        w[static_cast<size_t>(trial) % w.size()] = 2.0f + 0.1f * trial; // an outlier to clip
        for (int bits : all_bits) {
            CAPTURE(bits);
            const auto got = run("mse", w, bits);
            CHECK(bitwise_equal(got, naive_mse(w, bits)));
            CHECK(squared_error(w, got) <= squared_error(w, naive_uniform(w, bits)));
        }
        // the integer form is the same grid: scale * code
        const auto q = make_weight_quantizer("mse");
        REQUIRE(q->has_integer_form());
        const auto codes = q->kernel_codes(w, 3);
        std::vector<float> from_codes(w.size());
        dequantize_codes(codes, from_codes);
        CHECK(bitwise_equal(from_codes, run("mse", w, 3)));
        CHECK(*std::max_element(codes.codes.begin(), codes.codes.end()) <= 3);
    }
    // clipping pays on a moderate outlier: the 3-bit error falls below uniform's
    std::vector<float> w(64, 0.0f);
    for (size_t i = 0; i < w.size(); ++i) w[i] = 0.3f * (static_cast<float>(i) / 63.0f * 2 - 1);
    w[5] = 0.45f;
    CHECK(squared_error(w, run("mse", w, 3)) < 0.8 * squared_error(w, run("uniform", w, 3)));
    CHECK(make_weight_quantizer("mse", {{"grid", "11"}})->args().at("grid") == "11");
    CHECK_THROWS_WITH_AS(make_weight_quantizer("mse", {{"grid", "0"}}), doctest::Contains("grid"),
                         Error);
    CHECK_FALSE(make_weight_quantizer("kmeans")->has_integer_form());
    CHECK_THROWS_AS(make_weight_quantizer("kmeans")->kernel_codes(w, 4), Error);
}

TEST_CASE("quantizers: uniform rounds ties to even and divides by the scale") {
    // max|w| = 7 at 4 bits: qmax = 7, s = 1 exactly, so w / s is w.
    const std::vector<float> w{7.0f, 2.5f, 3.5f, -2.5f, -3.5f, 0.5f, 1.5f, -0.5f, -6.5f};
    const std::vector<float> expect{7.0f, 2.0f, 4.0f, -2.0f, -4.0f, 0.0f, 2.0f, -0.0f, -6.0f};
    CHECK(run("uniform", w, 4) == expect);
    // s = 0.5: 1.25 / 0.5 = 2.5 -> 2 -> 1.0; 1.75 / 0.5 = 3.5 -> 4 -> 2.0
    CHECK(run("uniform", {3.5f, 1.25f, 1.75f}, 4) == std::vector<float>{3.5f, 1.0f, 2.0f});
    // The codes the integer path uses.
    CHECK(uniform_scale(w, 4) == 1.0f);
    CHECK(uniform_codes(w, 4, 1.0f) == std::vector<int32_t>{7, 2, 4, -2, -4, 0, 2, 0, -6});
    CHECK(uniform_qmax(8) == 127);
    CHECK(uniform_qmax(2) == 1);

    // Where w / s and w * (1 / s) round differently, the division wins.
    test::Rng rng(5);
    int disagreements = 0;
    for (int trial = 0; trial < 20000 && disagreements < 5; ++trial) {
        const auto k = random_kernel(rng, 9, -1.0f, 1.0f);
        const float s = uniform_scale(k, 3);
        for (size_t i = 0; i < k.size(); ++i) {
            const float by_division = std::nearbyint(k[i] / s);
            const float by_reciprocal = std::nearbyint(k[i] * (1.0f / s));
            if (by_division != by_reciprocal) {
                ++disagreements;
                CHECK(uniform_codes(k, 3, s)[i] == static_cast<int32_t>(by_division));
            }
        }
    }
}

TEST_CASE("quantizers: zero kernels, 1-bit signs, 0-bit and 32-bit for every quantizer") {
    test::Rng rng(9);
    const auto random = random_kernel(rng, 50);
    for (const std::string& name : weight_quantizer_names()) {
        CAPTURE(name);
        const std::vector<float> zeros(12, 0.0f);
        for (int bits : all_bits) CHECK(run(name, zeros, bits) == zeros);
        CHECK(run(name, random, 0) == std::vector<float>(50, 0.0f));
        CHECK(bitwise_equal(run(name, random, 32), random));
        CHECK(run(name, {}, 4).empty());
        // In place (aliasing) gives the same result.
        for (int bits : {1, 2, 4, 8}) {
            std::vector<float> in_place = random;
            make_weight_quantizer(name)->quantize_kernel(in_place, bits, in_place);
            CHECK(bitwise_equal(in_place, run(name, random, bits)));
        }
        CHECK_THROWS_AS(run(name, random, 9), Error);
        CHECK_THROWS_AS(run(name, random, -1), Error);
    }
    // sign(0) = +1 at one bit: mean|w| = (0 + 1 + 2 + 0) / 4 = 0.75.
    const std::vector<float> with_zeros{0.0f, 1.0f, -2.0f, 0.0f};
    const std::vector<float> expect{0.75f, 0.75f, -0.75f, 0.75f};
    CHECK(run("uniform", with_zeros, 1) == expect);
    CHECK(run("ls", with_zeros, 1) == expect);
}

TEST_CASE("quantizers: quantize_weights applies per-kernel bits") {
    test::Rng rng(13);
    Tensor weight = test::random_tensor({3, 2, 2, 2}, rng);
    const std::vector<int> bits{0, 4, 32};
    auto q = make_weight_quantizer("uniform");
    const Tensor out = quantize_weights(*q, weight, bits);
    CHECK(out.dims == weight.dims);
    for (int k = 0; k < 3; ++k) {
        const std::vector<float> kernel(weight.data.begin() + 8 * k, weight.data.begin() + 8 * k + 8);
        const std::vector<float> got(out.data.begin() + 8 * k, out.data.begin() + 8 * k + 8);
        CHECK(got == naive_uniform(kernel, bits[static_cast<size_t>(k)]));
    }
    CHECK_THROWS_WITH_AS(quantize_weights(*q, weight, std::vector<int>{4, 4}),
                         doctest::Contains("3 kernels"), Error);
}

TEST_CASE("quantizers: registry lists names and rejects unknown names and arguments") {
    CHECK(weight_quantizer_names() ==
          std::vector<std::string>{"uniform", "uniform_asymmetric", "ls", "kmeans", "bayesian_bits",
                                   "mse", "adaround"});
    CHECK_THROWS_WITH_AS(make_weight_quantizer("lloyd"),
                         doctest::Contains("known quantizers: uniform, uniform_asymmetric, ls, kmeans"),
                         Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("uniform", {{"bits", "4"}}),
                         doctest::Contains("takes no arguments"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("kmeans", {{"iterations", "ten"}}),
                         doctest::Contains("must be an integer"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("kmeans", {{"iters", "10"}}),
                         doctest::Contains("accepted arguments: iterations"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("ls", {{"two_bit", "best"}}),
                         doctest::Contains("'greedy' or 'optimal'"), Error);
    CHECK(make_weight_quantizer("kmeans", {{"iterations", "7"}})->args().at("iterations") == "7");
    // Quantizer arguments read numbers as every other reader does (number_text.h).
    CHECK_NOTHROW(make_weight_quantizer("kmeans", {{"iterations", "+7"}}));
    CHECK_THROWS_WITH_AS(make_weight_quantizer("kmeans", {{"iterations", "+-7"}}),
                         doctest::Contains("must be an integer"), Error);
    CHECK(make_weight_quantizer("ls")->args().at("two_bit") == "greedy");
}

TEST_CASE("quantizers: uniform_asymmetric reconstructs min and max exactly") {
    test::Rng rng(17);
    for (int trial = 0; trial < 30; ++trial) {
        const auto w = random_kernel(rng, 3 + static_cast<size_t>(trial) * 5,
                                     -0.1f - 0.05f * trial, 0.7f + 0.3f * trial);
        const float lo = *std::min_element(w.begin(), w.end());
        const float hi = *std::max_element(w.begin(), w.end());
        for (int bits : {1, 2, 3, 4, 8, 16}) {
            CAPTURE(bits);
            const auto q = run("uniform_asymmetric", w, bits);
            const float qmax = static_cast<float>((1 << bits) - 1);
            const float s = (hi - lo) / qmax;
            std::set<float> levels(q.begin(), q.end());
            CHECK(levels.size() <= static_cast<size_t>(1 << bits));
            for (size_t i = 0; i < w.size(); ++i) {
                if (w[i] == lo) CHECK(q[i] == lo);
                if (w[i] == hi) CHECK(q[i] == hi);
                // Naive reference: the nearest of the levels lo + s * j.
                const float j = std::min(std::max(round_half_even((w[i] - lo) / s), 0.0f), qmax);
                CHECK(q[i] == (j == qmax ? hi : lo + s * j));
                const float ulp = std::numeric_limits<float>::epsilon() *
                                  std::max(std::fabs(lo), std::fabs(hi));
                CHECK(std::fabs(q[i] - w[i]) <= 0.5f * s + 4 * ulp);
            }
        }
    }
    CHECK(run("uniform_asymmetric", {0.3f, 0.3f}, 4) == std::vector<float>{0.3f, 0.3f});
    // 1 bit: two levels, the min and the max; the midpoint 1.0 is a tie (0.5) and goes to even 0.
    CHECK(run("uniform_asymmetric", {-1.0f, 0.6f, 1.0f, 1.4f, 3.0f}, 1) ==
          std::vector<float>{-1.0f, -1.0f, -1.0f, 3.0f, 3.0f});
}

TEST_CASE("quantizers: ls 1-bit is the least-squares optimum and greedy k-bit matches a naive "
          "expansion") {
    test::Rng rng(21);
    for (int trial = 0; trial < 30; ++trial) {
        const auto w = random_kernel(rng, 5 + static_cast<size_t>(trial) * 11);
        const auto q1 = run("ls", w, 1);
        const double best = squared_error(q1, w);
        const float s = std::fabs(q1[0]);
        for (double factor : {0.5, 0.9, 0.99, 0.999, 1.001, 1.01, 1.1, 2.0}) {
            std::vector<float> other(w.size());
            for (size_t i = 0; i < w.size(); ++i)
                other[i] = static_cast<float>(factor * s * (w[i] < 0 ? -1 : 1));
            CHECK(squared_error(other, w) >= best);
        }
        // Naive greedy residual expansion, and its error falls with every bit.
        double previous = best;
        for (int bits : {2, 3, 4, 5, 6, 7, 8, 16}) {
            std::vector<double> r(w.begin(), w.end()), sum(w.size(), 0.0);
            for (int step = 0; step < bits; ++step) {
                double m = 0;
                for (double v : r) m += std::fabs(v);
                m /= static_cast<double>(r.size());
                for (size_t i = 0; i < r.size(); ++i) {
                    const double t = r[i] < 0 ? -m : m;
                    sum[i] += t;
                    r[i] -= t;
                }
            }
            const auto q = run("ls", w, bits);
            for (size_t i = 0; i < w.size(); ++i) CHECK(q[i] == doctest::Approx(sum[i]).epsilon(1e-6));
            std::set<float> levels(q.begin(), q.end());
            CHECK(levels.size() <= static_cast<size_t>(1) << std::min(bits, 20));
            const double e = squared_error(q, w);
            CHECK(e <= previous * (1 + 1e-9));
            previous = e;
        }
    }
}

TEST_CASE("quantizers: ls optimal 2-bit equals the brute-force least-squares optimum") {
    test::Rng rng(23);
    for (int trial = 0; trial < 20; ++trial) {
        const auto w = random_kernel(rng, 9);
        // Brute force: each |w_i| joins the low or the high group; each level is its group's mean
        // magnitude (the best a, c for that split).
        double best = 1e300;
        for (unsigned mask = 0; mask < (1u << w.size()); ++mask) {
            double sum[2] = {0, 0};
            int count[2] = {0, 0};
            for (size_t i = 0; i < w.size(); ++i) {
                const int g = (mask >> i) & 1;
                sum[g] += std::fabs(w[i]);
                ++count[g];
            }
            double e = 0;
            for (size_t i = 0; i < w.size(); ++i) {
                const int g = (mask >> i) & 1;
                const double d = std::fabs(w[i]) - sum[g] / count[g];
                e += d * d;
            }
            best = std::min(best, e);
        }
        const auto optimal = run("ls", w, 2, {{"two_bit", "optimal"}});
        const auto greedy = run("ls", w, 2);
        CHECK(squared_error(optimal, w) == doctest::Approx(best).epsilon(1e-5));
        CHECK(squared_error(optimal, w) <= squared_error(greedy, w) * (1 + 1e-9));
        std::set<float> levels(optimal.begin(), optimal.end());
        CHECK(levels.size() <= 4);
    }
}

TEST_CASE("quantizers: kmeans is a Lloyd fixed point whose error falls with more bits") {
    test::Rng rng(29);
    for (int trial = 0; trial < 20; ++trial) {
        const auto w = random_kernel(rng, 40 + static_cast<size_t>(trial) * 13, -1.0f, 0.5f);
        double previous = 1e300;
        for (int bits : {1, 2, 3, 4, 5, 6, 7, 8, 16}) {
            CAPTURE(bits);
            const auto q = run("kmeans", w, bits);
            std::set<float> levels(q.begin(), q.end());
            CHECK(levels.size() <= static_cast<size_t>(1) << std::min(bits, 20));
            // Fixed point: every weight sits at its nearest codebook entry, and every codebook
            // entry is (to float precision) the mean of its weights.
            const std::vector<float> codebook(levels.begin(), levels.end());
            for (size_t i = 0; i < w.size(); ++i) {
                float nearest = codebook[0];
                for (float c : codebook)
                    if (std::fabs(c - w[i]) < std::fabs(nearest - w[i])) nearest = c;
                CHECK(std::fabs(q[i] - w[i]) <= std::fabs(nearest - w[i]) + 1e-6f);
            }
            for (float c : codebook) {
                double sum = 0;
                int n = 0;
                for (size_t i = 0; i < w.size(); ++i)
                    if (q[i] == c) {
                        sum += w[i];
                        ++n;
                    }
                CHECK(c == doctest::Approx(sum / n).epsilon(1e-5));
            }
            const double e = squared_error(q, w);
            CHECK(e <= previous * (1 + 1e-9));
            previous = e;
            if ((size_t{1} << bits) >= w.size()) CHECK(e == 0.0);
        }
        // Deterministic.
        CHECK(bitwise_equal(run("kmeans", w, 3), run("kmeans", w, 3)));
    }
}

TEST_CASE("quantizers: kmeans from its linear start on a hand example") {
    // 2 centroids start at min 0 and max 10; Lloyd moves them to the two cluster means.
    const std::vector<float> w{0.0f, 1.0f, 2.0f, 9.0f, 10.0f};
    CHECK(run("kmeans", w, 1) == std::vector<float>{1.0f, 1.0f, 1.0f, 9.5f, 9.5f});
}

// --------------------------------------------------------------------------------------------
// Activations

TEST_CASE("activations: fake quantization, signed and unsigned, ties and clamping") {
    // signed, 4 bits: qmax = 7; range 7 -> s = 1
    std::vector<float> x{2.5f, 3.5f, -2.5f, -3.5f, 9.0f, -9.0f, 0.4f, 7.0f};
    fake_quantize_activation(x.data(), 8, 7.0f, 4, true);
    CHECK(x == std::vector<float>{2.0f, 4.0f, -2.0f, -4.0f, 7.0f, -7.0f, 0.0f, 7.0f});
    // unsigned, 3 bits: qmax = 7; range 3.5 -> s = 0.5
    x = {-1.0f, 1.25f, 1.75f, 8.0f, 3.5f, 0.0f};
    fake_quantize_activation(x.data(), 6, 3.5f, 3, false);
    CHECK(x == std::vector<float>{0.0f, 1.0f, 2.0f, 3.5f, 3.5f, 0.0f});
    // unsigned, 1 bit: {0, range}
    x = {0.2f, 0.6f, 5.0f, -1.0f};
    fake_quantize_activation(x.data(), 4, 1.0f, 1, false);
    CHECK(x == std::vector<float>{0.0f, 1.0f, 1.0f, 0.0f});
    // signed, 1 bit: range * sign(x), sign(0) = +1
    x = {0.0f, -0.1f, 3.0f};
    fake_quantize_activation(x.data(), 3, 0.5f, 1, true);
    CHECK(x == std::vector<float>{0.5f, -0.5f, 0.5f});
    // 32 bits: unchanged; a zero range: zeros
    x = {0.123f, -4.0f};
    fake_quantize_activation(x.data(), 2, 1.0f, 32, true);
    CHECK(x == std::vector<float>{0.123f, -4.0f});
    fake_quantize_activation(x.data(), 2, 0.0f, 8, true);
    CHECK(x == std::vector<float>{0.0f, 0.0f});
    CHECK_THROWS_AS(fake_quantize_activation(x.data(), 2, 1.0f, 0, true), Error);
    CHECK_THROWS_AS(fake_quantize_activation(x.data(), 2, 1.0f, 12, true), Error);

    // Against a naive reference on random data, every bit-width.
    test::Rng rng(31);
    for (bool is_signed : {true, false})
        for (int bits : {2, 3, 4, 5, 6, 7, 8, 16}) {
            std::vector<float> v = random_kernel(rng, 500, -3.0f, 3.0f);
            const float range = 2.2f;
            const float qmax = static_cast<float>(is_signed ? (1 << (bits - 1)) - 1 : (1 << bits) - 1);
            const float s = range / qmax;
            std::vector<float> expect(v.size());
            for (size_t i = 0; i < v.size(); ++i)
                expect[i] = s * std::min(std::max(round_half_even(v[i] / s), is_signed ? -qmax : 0.0f), qmax);
            fake_quantize_activation(v.data(), static_cast<int64_t>(v.size()), range, bits, is_signed);
            CHECK(bitwise_equal(v, expect));
            CHECK(activation_scale(range, bits, is_signed) == s);
        }
}

TEST_CASE("activations: the clip mask passes what fake quantization does not clip") {
    const float range = 0.75f;
    for (bool is_signed : {false, true})
        for (int bits : {2, 3, 4, 8, 16}) {
            const ActivationClipMask mask(range, bits, is_signed);
            const float qmax = static_cast<float>(activation_qmax(bits, is_signed));
            const float s = range / qmax, qmin = is_signed ? -qmax : 0.0f;
            for (float x : {-1.0f, -0.75f, -0.7501f, -0.1f, 0.0f, 0.3f, 0.75f, 0.7501f, 2.0f}) {
                CAPTURE(is_signed); CAPTURE(bits); CAPTURE(x);
                CHECK(mask.passes(x) == (x / s >= qmin && x / s <= qmax));
            }
        }
    // Signed 1-bit is binary: the hardtanh window |x| <= 1, whatever the range (but not 0).
    const ActivationClipMask binary(0.3f, 1, true);
    CHECK(binary.passes(0.5f));
    CHECK(binary.passes(-1.0f));
    CHECK_FALSE(binary.passes(1.5f));
    CHECK_FALSE(ActivationClipMask(0.0f, 1, true).passes(0.5f));
    // Only zeros calibrated (range 0): everything is clipped. 32 bits: nothing is.
    CHECK_FALSE(ActivationClipMask(0.0f, 4, false).passes(0.0f));
    CHECK(ActivationClipMask(0.0f, float_bits, true).passes(1e9f));
    CHECK_THROWS_AS(ActivationClipMask(1.0f, 12, false), Error);
}

TEST_CASE("activations: calibration rules max, percentile and mse") {
    // Magnitudes 1..10000 (signed: half of them negative).
    std::vector<float> x(10000);
    for (int i = 0; i < 10000; ++i) x[static_cast<size_t>(i)] = static_cast<float>((i % 2 ? -1 : 1) * (i + 1));
    ActivationObserver signed_obs(true);
    signed_obs.observe(x.data(), static_cast<int64_t>(x.size()));
    CHECK(signed_obs.max() == 10000.0f);
    CHECK(signed_obs.count() == 10000);
    const CalibrationMethod max_rule = make_calibration("max");
    const CalibrationMethod pct = make_calibration("percentile");
    const CalibrationMethod mse = make_calibration("mse", {{"grid", "50"}});
    CHECK(signed_obs.range(max_rule, 8) == 10000.0f);
    // 99.99 % of 10000 values: rank 9999 -> 9999, to within one bin (16384 / 16384 = 1).
    CHECK(std::fabs(signed_obs.range(pct, 8) - 9999.0f) <= 1.0f);
    CHECK(signed_obs.range(make_calibration("percentile", {{"percentile", "50"}}), 8) ==
          doctest::Approx(5000.0f).epsilon(5e-4));
    CHECK(signed_obs.range(max_rule, 1) == doctest::Approx(5000.5f)); // signed 1-bit: mean|x|

    // Unsigned tensor: negative values do not raise the max.
    ActivationObserver unsigned_obs(false);
    unsigned_obs.observe(x.data(), static_cast<int64_t>(x.size()));
    CHECK(unsigned_obs.max() == 9999.0f);

    // mse: brute force over the same candidate grid with the exact values; the chosen range's
    // exact error is within 0.1 % of the best.
    test::Rng rng(37);
    std::vector<float> heavy(20000);
    for (float& v : heavy) {
        const float u = rng.uniform(0.0f, 1.0f);
        v = (rng.uniform(-1.0f, 1.0f) < 0 ? -1.0f : 1.0f) * (-std::log(1.0f - u * 0.99999f));
    }
    ActivationObserver obs(true);
    obs.observe(heavy.data(), static_cast<int64_t>(heavy.size()));
    for (int bits : {2, 4, 8}) {
        auto exact_error = [&](float range) {
            std::vector<float> q = heavy;
            fake_quantize_activation(q.data(), static_cast<int64_t>(q.size()), range, bits, true);
            return squared_error(q, heavy);
        };
        double best = 1e300;
        for (int i = 1; i <= 50; ++i)
            best = std::min(best, exact_error(static_cast<float>(double(obs.max()) * i / 50)));
        const float chosen = obs.range(mse, bits);
        CHECK(chosen <= obs.max());
        CHECK(exact_error(chosen) <= best * 1.001);
        if (bits <= 4) CHECK(chosen < obs.max()); // clipping pays off at low bit-widths
    }
    CHECK_THROWS_WITH_AS(make_calibration("entropy"),
                         doctest::Contains("known rules: max, percentile, mse"), Error);
    CHECK_THROWS_WITH_AS(make_calibration("percentile", {{"percentile", "101"}}),
                         doctest::Contains("must be a number in"), Error);
    CHECK(calibration_args(pct).at("percentile") == "99.99");
    // shortest_decimal's form, which reads back as the same double ("1e+02" before it).
    CHECK(calibration_args(make_calibration("percentile", {{"percentile", "100"}}))
              .at("percentile") == "100");
}

TEST_CASE("activations: observer ranges do not depend on batching, order or merging") {
    test::Rng rng(41);
    std::vector<float> x = random_kernel(rng, 5000, -2.0f, 2.0f);
    x[4000] = 37.0f; // the max arrives late and forces rebinning
    ActivationObserver whole(true), batched(true), reversed(true), left(true), right(true);
    whole.observe(x.data(), 5000);
    for (int i = 0; i < 5000; i += 128) batched.observe(x.data() + i, std::min(128, 5000 - i));
    std::vector<float> r(x.rbegin(), x.rend());
    reversed.observe(r.data(), 5000);
    left.observe(x.data() + 2500, 2500);
    right.observe(x.data(), 2500);
    left.merge(right);
    for (const CalibrationMethod& m :
         {make_calibration("max"), make_calibration("percentile"), make_calibration("mse")})
        for (int bits : {2, 4, 8}) {
            const float expect = whole.range(m, bits);
            CHECK(batched.range(m, bits) == expect);
            CHECK(reversed.range(m, bits) == expect);
            CHECK(left.range(m, bits) == expect);
        }
    ActivationObserver zeros(false);
    const std::vector<float> z(10, 0.0f);
    zeros.observe(z.data(), 10);
    CHECK(zeros.range(make_calibration("mse"), 4) == 0.0f);
    CHECK(zeros.range(make_calibration("percentile"), 4) == 0.0f);
}

TEST_CASE("activations: unsigned_values follows the graph structure") {
    test::GraphBuilder b({2, 8, 8});
    const std::string conv = b.conv(b.input(), 4);                 // signed
    const std::string relu = b.relu(conv);                          // unsigned
    const std::string pool = b.max_pool(relu);                      // unsigned
    const std::string conv2 = b.conv(pool, 4);                      // signed
    const std::string relu6 = b.clip(conv2, 0.0f, 6.0f);            // unsigned
    const std::string clipped = b.clip(conv2, -1.0f, 1.0f);         // signed
    const std::string sum_pos = b.add(pool, relu6);                 // unsigned
    const std::string sum_mixed = b.add(sum_pos, clipped);          // signed
    const std::string avg = b.average_pool(sum_pos, {{1, 1}, {1, 1}});  // unsigned
    const std::string gap = b.global_average_pool(b.add(avg, sum_pos)); // unsigned
    const std::string flat = b.flatten(gap);                        // unsigned
    const std::string flat2 = b.flatten(b.global_average_pool(sum_mixed)); // signed
    const Graph g = b.finish(b.fully_connected(flat, 3));
    const auto u = unsigned_values(g);
    CHECK(u.size() == g.nodes.size() + 1);
    CHECK_FALSE(u.at("input"));
    CHECK_FALSE(u.at(conv));
    CHECK(u.at(relu));
    CHECK(u.at(pool));
    CHECK_FALSE(u.at(conv2));
    CHECK(u.at(relu6));
    CHECK_FALSE(u.at(clipped));
    CHECK(u.at(sum_pos));
    CHECK_FALSE(u.at(sum_mixed));
    CHECK(u.at(avg));
    CHECK(u.at(gap));
    CHECK(u.at(flat));
    CHECK_FALSE(u.at(flat2));
    CHECK_FALSE(u.at(g.output));
}
