// The vectorized activation loops of the quantized network (evaluator/engine/qnet_loops.h) against the
// plain quantizer, bit for bit, each compiled copy forced in turn (as ncnn and ggml test their
// fast kernels against reference ones): the kernels pick one copy by CPU, so a wrong wide copy
// would otherwise go unseen on machines that pick the baseline, and the other way round. The
// inputs are chosen where vector code goes wrong: ties, one ulp either side of a tie, the clamp
// edges, +-0, infinities, subnormals, NaN, and ranges that start and end off a vector boundary.
#include "evaluator/base/host_chunks.h"
#include "evaluator/engine/qnet_kernels.h"
#include "evaluator/engine/qnet_loops.h"
#include "evaluator/quant/activation_range.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <random>
#include <string>
#include <vector>

using namespace mps;

namespace {

struct Grid {
    float range;
    int bits;
    bool is_signed;
    float s() const { return activation_scale(range, bits, is_signed); }
    float qmax() const { return static_cast<float>(activation_qmax(bits, is_signed)); }
    float qmin() const { return is_signed ? -qmax() : 0.0f; }
    std::string name() const {
        return std::to_string(bits) + (is_signed ? "-bit signed" : "-bit unsigned") + ", range " +
               std::to_string(range);
    }
};

// Every grid point and tie around the code range (and past it), one ulp either side of each tie,
// special values, then random values over 1.5x the range; an odd count, so that no vector width
// divides it.
std::vector<float> inputs(const Grid& g, bool with_nan) {
    constexpr float inf = std::numeric_limits<float>::infinity();
    std::vector<float> x{0.0f, -0.0f, inf, -inf, std::numeric_limits<float>::denorm_min(),
                         -std::numeric_limits<float>::denorm_min(),
                         std::numeric_limits<float>::max(), -std::numeric_limits<float>::max()};
    if (with_nan) x.push_back(std::numeric_limits<float>::quiet_NaN());
    const float s = g.s();
    for (float k = g.qmin() - 3; k <= g.qmax() + 3; k += 1) {
        const float tie = (k + 0.5f) * s;
        x.insert(x.end(), {k * s, tie, std::nextafter(tie, inf), std::nextafter(tie, -inf)});
    }
    std::mt19937 random(1234);
    std::uniform_real_distribution<float> uniform(-1.5f * g.range, 1.5f * g.range);
    while (x.size() < 4099) x.push_back(uniform(random));
    return x;
}

// The first index where a and b differ in their bytes (so -0 differs from +0).
template <typename T>
std::optional<size_t> first_difference(const std::vector<T>& a, const std::vector<T>& b) {
    for (size_t i = 0; i < a.size(); ++i)
        if (std::memcmp(&a[i], &b[i], sizeof(T)) != 0) return i;
    return std::nullopt;
}

// The plain codes: clamp(round_half_even(x / s), qmin, qmax) with the library's rounding.
template <typename Code>
std::vector<Code> plain_codes(const std::vector<float>& x, const Grid& g) {
    std::vector<Code> q(x.size());
    for (size_t i = 0; i < x.size(); ++i)
        q[i] = static_cast<Code>(std::clamp(std::nearbyint(x[i] / g.s()), g.qmin(), g.qmax()));
    return q;
}

std::vector<float> plain_fake(std::vector<float> x, const Grid& g) {
    fake_quantize_activation(x.data(), static_cast<int64_t>(x.size()), g.range, g.bits,
                             g.is_signed);
    return x;
}

std::vector<Grid> grids(bool with_16_bits) {
    std::vector<Grid> all;
    for (bool is_signed : {false, true})
        for (int bits = is_signed ? 2 : 1; bits <= 8; ++bits)
            for (float range : {6.0f, 1.7f, 0.01f}) all.push_back({range, bits, is_signed});
    if (with_16_bits)
        for (bool is_signed : {false, true}) all.push_back({3.3f, 16, is_signed});
    return all;
}

// Runs `loop` over [begin, end) of an output prefilled with a sentinel, expects `want` there and
// the sentinel outside.
template <typename T, typename Loop>
void check_range(const std::vector<float>& x, const std::vector<T>& want, const Loop& loop,
                 const std::string& what) {
    const size_t begin = 3, end = x.size() - 2;
    std::vector<T> got(x.size(), T(77)), expected(x.size(), T(77));
    std::copy(want.begin() + begin, want.begin() + end, expected.begin() + begin);
    loop(got.data(), static_cast<int64_t>(begin), static_cast<int64_t>(end));
    const std::optional<size_t> at = first_difference(got, expected);
    INFO(what);
    if (at)
        FAIL_CHECK("element " << *at << " of x = " << x[*at] << ": got " << +got[*at]
                              << ", the plain quantizer gives " << +expected[*at]);
}

} // namespace

TEST_CASE("qnet loops: every compiled copy the CPU runs matches the plain quantizer bit for bit") {
    const auto variants = qnet::loop_variants();
    REQUIRE(!variants.empty());
    CHECK(variants.back().supported); // the baseline always runs
    for (const qnet::Loops& v : variants) {
        if (!v.supported) {
            MESSAGE("skipping the " << std::string(v.target) << " loops: this CPU cannot run them");
            continue;
        }
        for (const Grid& g : grids(true)) {
            const std::string what = std::string(v.target) + ", " + g.name();
            const std::vector<float> x = inputs(g, true);
            check_range(x, plain_fake(x, g), [&](float* y, int64_t b, int64_t e) {
                v.fake(x.data(), y, b, e, g.s(), g.qmin(), g.qmax());
            }, what + ", fake");
        }
        for (const Grid& g : grids(false)) {
            const std::string what = std::string(v.target) + ", " + g.name() + ", codes";
            const std::vector<float> x = inputs(g, false); // NaN has no code
            if (g.is_signed) {
                check_range(x, plain_codes<int8_t>(x, g), [&](int8_t* q, int64_t b, int64_t e) {
                    v.signed_codes(x.data(), q, b, e, g.s(), g.qmin(), g.qmax());
                }, what);
                const float z = g.qmax() + 1.0f; // signed_activation_zero_point
                std::vector<uint8_t> shifted;
                for (int8_t c : plain_codes<int8_t>(x, g)) shifted.push_back(uint8_t(c + z));
                check_range(x, shifted, [&](uint8_t* q, int64_t b, int64_t e) {
                    v.shifted_codes(x.data(), q, b, e, g.s(), g.qmax(), z);
                }, what + ", shifted");
            }
            else
                check_range(x, plain_codes<uint8_t>(x, g), [&](uint8_t* q, int64_t b, int64_t e) {
                    v.unsigned_codes(x.data(), q, b, e, g.s(), g.qmin(), g.qmax());
                }, what);
        }
    }
}

TEST_CASE("qnet loops: the kernels use the widest copy the CPU runs") {
    const auto variants = qnet::loop_variants();
    const qnet::Loops* widest = nullptr;
    for (const qnet::Loops& v : variants)
        if (v.supported && !widest) widest = &v;
    REQUIRE(widest);
    CHECK(&qnet::active_loops() == widest);
    MESSAGE("the kernels run the " << std::string(qnet::active_loops().target) << " loops");
}

TEST_CASE("qnet kernels: whole buffers over several chunks equal the plain quantizer") {
    // Several host chunks (each an OpenMP task) and a tail, so the chunking is covered too.
    for (const Grid& g : {Grid{6.0f, 4, false}, Grid{2.5f, 8, true}, Grid{1.0f, 1, true}}) {
        INFO(g.name());
        std::vector<float> x = inputs(g, false);
        const size_t n = static_cast<size_t>(2 * host_chunk + 1001);
        while (x.size() < n) x.push_back(x[x.size() % 997]);
        std::vector<float> y(x.size());
        qnet::fake_quantize_into(x.data(), y.data(), static_cast<int64_t>(x.size()), g.range,
                                 g.bits, g.is_signed);
        CHECK(!first_difference(y, plain_fake(x, g)));
        std::vector<int8_t> codes(x.size());
        qnet::quantize_to_codes(x.data(), codes.data(), static_cast<int64_t>(x.size()), g.range,
                                g.bits, g.is_signed);
        if (g.is_signed && g.bits == 1) { // the sign, sign(0) = +1
            std::vector<int8_t> want(x.size());
            for (size_t i = 0; i < x.size(); ++i) want[i] = x[i] >= 0.0f ? 1 : -1;
            CHECK(!first_difference(codes, want));
        } else if (g.is_signed) {
            CHECK(!first_difference(codes, plain_codes<int8_t>(x, g)));
        } else {
            std::vector<uint8_t> bytes(codes.size());
            std::memcpy(bytes.data(), codes.data(), codes.size());
            CHECK(!first_difference(bytes, plain_codes<uint8_t>(x, g)));
        }
    }
}

TEST_CASE("qnet kernels: shifted codes are the signed codes plus the zero point") {
    // The form signed inputs take below avx512_core_vnni (int8_isa.h): u8 code = c + 2^(b-1).
    for (const Grid& g : {Grid{2.5f, 8, true}, Grid{1.7f, 3, true}, Grid{1.0f, 1, true},
                          Grid{0.0f, 4, true}}) {
        INFO(g.name());
        std::vector<float> x = inputs(g.range == 0.0f ? Grid{1.0f, 4, true} : g, false);
        const size_t n = static_cast<size_t>(host_chunk + 333);
        while (x.size() < n) x.push_back(x[x.size() % 997]);
        std::vector<int8_t> codes(x.size());
        qnet::quantize_to_codes(x.data(), codes.data(), static_cast<int64_t>(x.size()), g.range,
                                g.bits, true);
        std::vector<uint8_t> shifted(x.size()), want(x.size());
        qnet::quantize_to_shifted_codes(x.data(), shifted.data(), static_cast<int64_t>(x.size()),
                                        g.range, g.bits);
        const int z = g.bits == 1 ? 1 : 1 << (g.bits - 1);
        for (size_t i = 0; i < x.size(); ++i) want[i] = static_cast<uint8_t>(codes[i] + z);
        CHECK(!first_difference(shifted, want));
    }
}
