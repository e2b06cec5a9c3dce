// The `bayesian_bits` weight quantizer: bit for bit the nested residual quantizer's levels at 2, 4,
// 8 and 16 bits, the affine grid of docs/quantizers.md written here naively for every bit-width,
// its level count and endpoints, zero and subnormal kernels, the registry, and — on a small random
// network, no data files — that the integer path falls back to float for it and computes the
// quantized reference function.
#include "evaluator/base/error.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/quant/quantizer.h"
#include "evaluator/quant/residual_quantizer.h"
#include "evaluator/ref/quantized_reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstring>
#include <set>
#include <string>
#include <vector>

using namespace mps;
using test::round_half_even;

namespace {

const std::vector<int> quantized_bits{1, 2, 3, 4, 5, 6, 7, 8, 16};

std::vector<float> run(const std::vector<float>& w, int bits) {
    std::vector<float> out(w.size(), -123.0f);
    make_weight_quantizer("bayesian_bits")->quantize_kernel(w, bits, out);
    return out;
}

bool bitwise_equal(const std::vector<float>& a, const std::vector<float>& b) {
    return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

float max_abs(const std::vector<float>& w) {
    float m = 0.0f;
    for (float v : w) m = std::max(m, std::fabs(v));
    return m;
}

// docs/quantizers.md's rule with the step by one division:
// x_min + s * round_half_even((w - x_min) / s).
std::vector<float> naive_affine(const std::vector<float>& w, int bits) {
    const float top = max_abs(w), bottom = -top;
    const float s = (top - bottom) / static_cast<float>(std::pow(2.0, bits) - 1.0);
    std::vector<float> out(w.size());
    for (size_t i = 0; i < w.size(); ++i)
        out[i] = bottom + s * round_half_even((w[i] - bottom) / s);
    return out;
}

// Random kernels of assorted sizes and scales; some have their largest magnitude on a negative
// weight, and some hold exact grid midpoints (ties).
std::vector<std::vector<float>> random_kernels(uint64_t seed) {
    test::Rng rng(seed);
    std::vector<std::vector<float>> kernels;
    for (int k = 0; k < 40; ++k) {
        const size_t n = 1 + static_cast<size_t>(rng.uniform(0.0f, 300.0f));
        const float scale = std::pow(10.0f, rng.uniform(-3.0f, 1.0f));
        std::vector<float> w(n);
        for (float& v : w) v = rng.uniform(-scale, scale);
        if (k % 3 == 0) w[0] = -1.5f * scale; // max|w| from a negative weight
        if (k % 5 == 0) w.push_back(0.0f);
        kernels.push_back(std::move(w));
    }
    kernels.push_back({0.7f});        // one weight: the range [-0.7, 0.7]
    kernels.push_back({-1.5f, 0.0f, -1.0f, 1.0f, 0.9f, -0.4f, 1.5f}); // midpoints at b = 2
    return kernels;
}

} // namespace

TEST_CASE("bayesian_bits quantizer: 2, 4, 8, 16 bits are the residual quantizer's levels") {
    for (const std::vector<float>& w : random_kernels(31)) {
        const ResidualQuantizer grid = ResidualQuantizer::symmetric(max_abs(w));
        for (int bits : {2, 4, 8, 16}) {
            CAPTURE(bits);
            std::vector<float> want(w.size());
            for (size_t i = 0; i < w.size(); ++i) want[i] = grid.level(w[i], bits);
            CHECK(bitwise_equal(run(w, bits), want));
            // And the Bayesian Bits forward with the gates up to b open gives the same values.
            std::vector<float> nested(w.size());
            grid.quantize(w, gates_for_bits(bits), nested);
            CHECK(bitwise_equal(run(w, bits), nested));
        }
    }
}

TEST_CASE("bayesian_bits quantizer: the affine grid of the kernel's symmetric range") {
    for (const std::vector<float>& w : random_kernels(37)) {
        const float top = max_abs(w);
        for (int bits : quantized_bits) {
            CAPTURE(bits);
            const std::vector<float> got = run(w, bits), want = naive_affine(w, bits);
            if (bits == 2 || bits == 4 || bits == 8 || bits == 16) {
                // The residual steps come from a recursion: equal up to float rounding, and the
                // code can differ only where w sits within rounding of a midpoint.
                const double step = 2.0 * top / (std::pow(2.0, bits) - 1.0);
                size_t other_code = 0;
                for (size_t i = 0; i < w.size(); ++i) {
                    const double diff = std::fabs(double(got[i]) - want[i]);
                    const bool same_code = diff <= 1e-5 * top;
                    CHECK((same_code || std::fabs(diff - step) <= 1e-5 * top));
                    other_code += same_code ? 0 : 1;
                }
                CHECK(other_code * 50 <= w.size());
            } else {
                CHECK(bitwise_equal(got, want)); // one division: exactly the documented formula
            }
        }
    }
    // By hand (docs/quantizers.md): b = 2, max 1.5, s = 1, levels -1.5, -0.5, 0.5, 1.5; the code is
    // round_half_even(w + 1.5).
    CHECK(run({-1.5f, 0.0f, -1.0f, 1.0f, 0.9f, -0.4f, 1.5f}, 2) ==
          std::vector<float>{-1.5f, 0.5f, -1.5f, 0.5f, 0.5f, -0.5f, 1.5f});
    // b = 1: the levels are -max and +max; 0 is a tie and takes the even code 0.
    CHECK(run({0.0f, 0.3f, -0.2f, -1.0f, 0.5f}, 1) ==
          std::vector<float>{-1.0f, 1.0f, -1.0f, -1.0f, 1.0f});
    // b = 3: s = 2 * 3.5 / 7 = 1, levels -3.5 .. 3.5 in steps of 1.
    CHECK(run({3.5f, 0.2f, -0.2f, 1.1f, -3.5f}, 3) ==
          std::vector<float>{3.5f, 0.5f, -0.5f, 1.5f, -3.5f});
}

TEST_CASE("bayesian_bits quantizer: at most 2^b levels, from -max|w| to +max|w|") {
    test::Rng rng(41);
    // A dense kernel: every level of the small grids is hit.
    std::vector<float> dense(5001);
    for (size_t i = 0; i < dense.size(); ++i)
        dense[i] = -0.83f + 1.66f * static_cast<float>(i) / static_cast<float>(dense.size() - 1);
    std::vector<float> random(3000);
    for (float& v : random) v = rng.uniform(-2.0f, 1.2f); // max|w| ~ 2, from a negative weight
    for (const std::vector<float>* w : {&dense, &random}) {
        const float top = max_abs(*w);
        for (int bits : quantized_bits) {
            CAPTURE(bits);
            const std::vector<float> q = run(*w, bits);
            const std::set<float> levels(q.begin(), q.end());
            CHECK(levels.size() <= (size_t{1} << bits));
            if (w == &dense && bits <= 8) CHECK(levels.size() == (size_t{1} << bits));
            // -max|w| is a level exactly, +max|w| to float rounding of x_min + s * (2^b - 1)
            // (reached when the kernel spans the whole symmetric range, like the dense one).
            CHECK(*levels.begin() == -top);
            if (w == &dense) CHECK(*levels.rbegin() == doctest::Approx(top).epsilon(1e-6));
            CHECK(*levels.rbegin() <= top * (1.0f + 1e-6f));
            // Weights of -max|w| and +max|w| land on the bottom and the top level.
            std::vector<float> with_ends = *w;
            with_ends.push_back(top);
            with_ends.push_back(-top);
            const std::vector<float> ends = run(with_ends, bits);
            CHECK(ends[w->size()] == *std::max_element(ends.begin(), ends.end()));
            CHECK(ends[w->size()] == doctest::Approx(top).epsilon(1e-6));
            CHECK(ends[w->size() + 1] == -top);
        }
    }
}

TEST_CASE("bayesian_bits quantizer: zero and subnormal kernels, 0 and 32 bits, aliasing") {
    const std::vector<float> zeros(17, 0.0f);
    for (int bits : quantized_bits) CHECK(run(zeros, bits) == zeros);
    // A subnormal range whose 16-bit step underflows: the result stays finite (weights kept).
    const std::vector<float> tiny{1e-44f, -3e-45f, 0.0f};
    for (int bits : quantized_bits) {
        CAPTURE(bits);
        for (float v : run(tiny, bits)) CHECK(std::isfinite(v));
    }
    CHECK(bitwise_equal(run(tiny, 16), tiny));

    test::Rng rng(43);
    std::vector<float> w(64);
    for (float& v : w) v = rng.uniform(-0.3f, 0.3f);
    CHECK(run(w, 0) == std::vector<float>(64, 0.0f));
    CHECK(bitwise_equal(run(w, 32), w));
    for (int bits : quantized_bits) {
        std::vector<float> in_place = w;
        make_weight_quantizer("bayesian_bits")->quantize_kernel(in_place, bits, in_place);
        CHECK(bitwise_equal(in_place, run(w, bits)));
    }
    CHECK_THROWS_AS(run(w, 9), Error);
    CHECK_THROWS_AS(run(w, 32 + 1), Error);

    // Per kernel: each output channel on its own range.
    Tensor weight({3, 2, 2, 2});
    for (float& v : weight.data) v = rng.uniform(-1.0f, 1.0f);
    std::fill(weight.data.begin() + 8, weight.data.begin() + 16, 0.0f); // kernel 1 all zero
    weight.data[20] = 5.0f;                                              // kernel 2: max 5
    const std::vector<int> bits{4, 4, 2};
    const Tensor q = quantize_weights(*make_weight_quantizer("bayesian_bits"), weight, bits);
    for (size_t k = 0; k < 3; ++k) {
        const auto first = weight.data.begin() + static_cast<std::ptrdiff_t>(8 * k);
        const std::vector<float> kernel(first, first + 8);
        const auto out = q.data.begin() + static_cast<std::ptrdiff_t>(8 * k);
        const std::vector<float> got(out, out + 8);
        CHECK(bitwise_equal(got, run(kernel, bits[k])));
    }
}

TEST_CASE("bayesian_bits quantizer: registered, takes no arguments") {
    const std::vector<std::string> names = weight_quantizer_names();
    CHECK(std::count(names.begin(), names.end(), "bayesian_bits") == 1);
    const auto q = make_weight_quantizer("bayesian_bits");
    CHECK(q->name() == "bayesian_bits");
    CHECK(q->args().empty());
    CHECK_THROWS_WITH_AS(make_weight_quantizer("bayesian_bits", {{"bits", "4"}}),
                         doctest::Contains("takes no arguments"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("bayesian_bit"),
                         doctest::Contains("bayesian_bits"), Error); // listed among the known
}

TEST_CASE("bayesian_bits quantizer: the integer path falls back to float, computes the reference") {
    test::GraphBuilder b({3, 8, 8}, 47);
    std::string x = b.relu(b.conv(b.input(), 8));
    x = b.relu(b.conv(x, 8));
    x = b.flatten(b.global_average_pool(x));
    Graph graph = b.finish(b.fully_connected(x, 10));
    fold_batch_norm(graph);
    const auto calibration = std::make_shared<const Calibration>(calibrate(
        graph, test::random_images(graph.input_shape, 16, 48), CalibrationMethod{}));
    const Dataset images = test::random_images(graph.input_shape, 4, 49);
    Tensor input({images.count, images.channels, images.height, images.width});
    input.data = images.images;

    BitPolicy policy = BitPolicy::uniform(graph, 4, 8);
    policy.layers[1].weight_bits[2] = 2;
    policy.layers[1].weight_bits[5] = 0;
    const std::shared_ptr<const WeightQuantizer> quantizer = make_weight_quantizer("bayesian_bits");
    const auto cache = std::make_shared<WeightCache>(graph, quantizer);
    QuantizedNetwork integer(graph, calibration, cache, ExecutionPath::integer, images.count);
    integer.set_policy(policy);
    const std::vector<std::string> lines = integer.path_decisions();
    REQUIRE(lines.size() == policy.layers.size());
    for (size_t l = 0; l < lines.size(); ++l)
        CHECK(lines[l] == policy.layers[l].name +
                              ": weight quantizer 'bayesian_bits' has no integer form, float path");
    const Tensor want = reference_quantized_forward(graph, input, policy, *quantizer, *calibration);
    CHECK(test::relative_max_diff(integer.run(input.data.data(), images.count), want) < 1e-5);
}
