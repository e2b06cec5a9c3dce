#include "evaluator/engine/qnet_kernels.h"

#include "evaluator/base/error.h"
#include "evaluator/base/host_chunks.h"
#include "evaluator/engine/int8_isa.h"
#include "evaluator/engine/qnet_loops.h"
#include "evaluator/quant/activation_range.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <type_traits>
#include <vector>

namespace mps::qnet {
namespace {

// clamp(round_half_even(v), qmin, qmax) for |qmin|, |qmax| < 2^21, without a libm call so that
// the loops vectorize: v is first clamped to [qmin - 1, qmax + 1] (which does not change the
// result), then adding and subtracting 1.5 * 2^23 rounds it to an integer in the current rounding
// mode (round-half-even by default), exactly, as std::nearbyint does.
inline float round_clamped(float v, float qmin, float qmax) {
    constexpr float magic = 12582912.0f; // 1.5 * 2^23
    v = std::min(std::max(v, qmin - 1.0f), qmax + 1.0f);
    const float r = (v + magic) - magic;
    return std::min(std::max(r, qmin), qmax);
}

template <typename Code>
inline void codes_loop(const float* x, Code* q, int64_t begin, int64_t end, float s, float qmin,
                       float qmax) {
    for (int64_t i = begin; i < end; ++i)
        q[i] = static_cast<Code>(round_clamped(x[i] / s, qmin, qmax));
}

inline void shifted_loop(const float* x, uint8_t* q, int64_t begin, int64_t end, float s,
                         float qmax, float zero_point) {
    for (int64_t i = begin; i < end; ++i)
        q[i] = static_cast<uint8_t>(round_clamped(x[i] / s, -qmax, qmax) + zero_point);
}

inline void fake_loop(const float* x, float* y, int64_t begin, int64_t end, float s, float qmin,
                      float qmax) {
    for (int64_t i = begin; i < end; ++i) y[i] = s * (round_clamped(x[i] / s, qmin, qmax) + 0.0f);
}

// The loops above compiled for one instruction set (`attributes`), as a Loops entry: the build
// has no -march, and the baseline SSE loop took ~14 % of an integer resnet8 run, so they are also
// compiled for AVX-512. The inline bodies are the same source for every copy.
#define MPS_LOOPS(name, attributes)                                                            \
    namespace name {                                                                           \
    attributes void unsigned_codes(const float* x, uint8_t* q, int64_t begin, int64_t end,     \
                                   float s, float qmin, float qmax) {                          \
        codes_loop(x, q, begin, end, s, qmin, qmax);                                           \
    }                                                                                          \
    attributes void signed_codes(const float* x, int8_t* q, int64_t begin, int64_t end,        \
                                 float s, float qmin, float qmax) {                            \
        codes_loop(x, q, begin, end, s, qmin, qmax);                                           \
    }                                                                                          \
    attributes void shifted_codes(const float* x, uint8_t* q, int64_t begin, int64_t end,      \
                                  float s, float qmax, float zero_point) {                     \
        shifted_loop(x, q, begin, end, s, qmax, zero_point);                                   \
    }                                                                                          \
    attributes void fake(const float* x, float* y, int64_t begin, int64_t end, float s,        \
                         float qmin, float qmax) {                                             \
        fake_loop(x, y, begin, end, s, qmin, qmax);                                            \
    }                                                                                          \
    }

MPS_LOOPS(baseline, )
#if defined(__x86_64__)
MPS_LOOPS(x86_64_v4, __attribute__((target("arch=x86-64-v4"))))
MPS_LOOPS(x86_64_v3, __attribute__((target("arch=x86-64-v3"))))
#endif
#undef MPS_LOOPS

std::vector<Loops> make_variants() {
    std::vector<Loops> variants;
#if defined(__x86_64__)
    __builtin_cpu_init();
    variants.push_back({"x86-64-v4", __builtin_cpu_supports("x86-64-v4") > 0,
                        x86_64_v4::unsigned_codes, x86_64_v4::signed_codes,
                        x86_64_v4::shifted_codes, x86_64_v4::fake});
    variants.push_back({"x86-64-v3", __builtin_cpu_supports("x86-64-v3") > 0,
                        x86_64_v3::unsigned_codes, x86_64_v3::signed_codes,
                        x86_64_v3::shifted_codes, x86_64_v3::fake});
#endif
    variants.push_back(
        {"baseline", true, baseline::unsigned_codes, baseline::signed_codes,
         baseline::shifted_codes, baseline::fake});
    return variants;
}

template <typename Code>
void codes_of(const float* x, Code* q, int64_t n, float s, float qmin, float qmax) {
    const int64_t tasks = host_chunk_count(n);
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
        const auto [begin, size] = host_chunk_at(t, n);
        if constexpr (std::is_same_v<Code, uint8_t>)
            active_loops().unsigned_codes(x, q, begin, begin + size, s, qmin, qmax);
        else
            active_loops().signed_codes(x, q, begin, begin + size, s, qmin, qmax);
    }
}

} // namespace

std::span<const Loops> loop_variants() {
    static const std::vector<Loops> variants = make_variants();
    return variants;
}

const Loops& active_loops() {
    static const Loops& active =
        *std::find_if(loop_variants().begin(), loop_variants().end(),
                      [](const Loops& l) { return l.supported; });
    return active;
}

void fake_quantize_into(const float* x, float* y, int64_t n, float range, int bits,
                        bool is_signed) {
    const int64_t tasks = host_chunk_count(n);
    const float s = bits == 1 && is_signed ? 0.0f : activation_scale(range, bits, is_signed);
    if (s != 0.0f && bits <= 16) { // the common case, vectorized; the same arithmetic as
                                   // fake_quantize_activation (division, "+ 0.0f" for -0)
        const float qmax = static_cast<float>(activation_qmax(bits, is_signed));
        const float qmin = is_signed ? -qmax : 0.0f;
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (int64_t t = 0; t < tasks; ++t) {
            const auto [begin, size] = host_chunk_at(t, n);
            active_loops().fake(x, y, begin, begin + size, s, qmin, qmax);
        }
        return;
    }
    // Each task runs the library's own quantizer on its chunk: bit-identical by construction.
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
        const auto [begin, len] = host_chunk_at(t, n);
        if (x != y) std::memcpy(y + begin, x + begin, static_cast<size_t>(len) * sizeof(float));
        fake_quantize_activation(y + begin, len, range, bits, is_signed);
    }
}

void quantize_to_codes(const float* x, void* codes, int64_t n, float range, int bits,
                       bool is_signed) {
    if (bits < 1 || bits > 8)
        throw Error("quantize_to_codes: activation bit-width " + std::to_string(bits) +
                    " has no 8-bit code; use 1..8");
    const float s = activation_scale(range, bits, is_signed);
    if (is_signed && bits == 1) {
        auto* q = static_cast<int8_t*>(codes);
#pragma omp parallel for schedule(static) if (n > host_chunk)
        for (int64_t i = 0; i < n; ++i) q[i] = x[i] >= 0.0f ? 1 : -1;
        return;
    }
    if (s == 0.0f) { // only zeros were seen at calibration: every code is 0
        std::memset(codes, 0, static_cast<size_t>(n));
        return;
    }
    const float qmax = static_cast<float>(activation_qmax(bits, is_signed));
    if (is_signed)
        codes_of(x, static_cast<int8_t*>(codes), n, s, -qmax, qmax);
    else
        codes_of(x, static_cast<uint8_t*>(codes), n, s, 0.0f, qmax);
}

void quantize_to_shifted_codes(const float* x, uint8_t* codes, int64_t n, float range, int bits) {
    const int z = signed_activation_zero_point(bits); // checks bits
    const float s = activation_scale(range, bits, true);
    if (bits == 1) {
#pragma omp parallel for schedule(static) if (n > host_chunk)
        for (int64_t i = 0; i < n; ++i) codes[i] = static_cast<uint8_t>(x[i] >= 0.0f ? z + 1 : z - 1);
        return;
    }
    if (s == 0.0f) { // only zeros were seen at calibration: every code is 0
        std::memset(codes, z, static_cast<size_t>(n));
        return;
    }
    const float qmax = static_cast<float>(activation_qmax(bits, true));
    const int64_t tasks = host_chunk_count(n);
#pragma omp parallel for schedule(static) if (tasks > 1)
    for (int64_t t = 0; t < tasks; ++t) {
        const auto [begin, size] = host_chunk_at(t, n);
        active_loops().shifted_codes(x, codes, begin, begin + size, s, qmax,
                                     static_cast<float>(z));
    }
}

} // namespace mps::qnet
