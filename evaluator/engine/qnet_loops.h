#pragma once
// The vectorized inner loops of qnet_kernels.cpp (internal), one compiled copy per instruction
// set: x86-64-v4 (AVX-512), x86-64-v3 (AVX2) and the baseline the build targets (it has no -march). The kernels call
// the best copy the CPU runs, chosen once, as GCC's target_clones would; unlike target_clones this
// lets a test force each copy and check it bit for bit against the plain reference.
//
// Each loop maps [begin, end) of x to the same range of its output, with s the quantization step
// and [qmin, qmax] the code range (|qmin|, |qmax| < 2^21):
//   codes:  q[i] = clamp(round_half_even(x[i] / s), qmin, qmax), as uint8 or int8
//   shifted: q[i] = clamp(round_half_even(x[i] / s), -qmax, qmax) + zero_point, as uint8
//   fake:   y[i] = s * (that code + 0.0f)       (fake_quantize_activation, activation_range.h)
#include <cstdint>
#include <span>

namespace mps::qnet {

struct Loops {
    const char* target; // "x86-64-v4", "x86-64-v3", "baseline"
    bool supported;     // this CPU runs it
    void (*unsigned_codes)(const float* x, uint8_t* q, int64_t begin, int64_t end, float s,
                           float qmin, float qmax);
    void (*signed_codes)(const float* x, int8_t* q, int64_t begin, int64_t end, float s,
                         float qmin, float qmax);
    void (*shifted_codes)(const float* x, uint8_t* q, int64_t begin, int64_t end, float s,
                          float qmax, float zero_point);
    void (*fake)(const float* x, float* y, int64_t begin, int64_t end, float s, float qmin,
                 float qmax);
};

// Every compiled copy, the widest first; the last (baseline) is always supported.
std::span<const Loops> loop_variants();
// The copy the kernels use: the first supported one.
const Loops& active_loops();

} // namespace mps::qnet
