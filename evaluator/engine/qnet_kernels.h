#pragma once
// Elementwise kernels of QuantizedNetwork (internal): the activation quantizer applied to whole
// buffers, in parallel. They work on any memory layout (blocked or plain) because they map element
// i to element i; a padding zero stays zero (except signed 1-bit, whose code for 0 is +1, which
// only meets zero-padded weights).
#include <cstdint>

namespace mps::qnet {

// y[i] = fake_quantize_activation(x[i]) bit for bit (activation_range.h); bits 1..8, 16.
void fake_quantize_into(const float* x, float* y, int64_t n, float range, int bits,
                        bool is_signed);

// The integer codes of that same quantization: codes[i] = clamp(round_half_even(x[i] / s), qmin,
// qmax), s = activation_scale(range, bits, is_signed), 0 when s == 0, the sign (+-1, sign(0) =
// +1) for signed 1-bit. `codes` is uint8 when unsigned, int8 when signed; bits 1..8.
void quantize_to_codes(const float* x, void* codes, int64_t n, float range, int bits,
                       bool is_signed);

// The signed codes of that quantization plus the zero point z = signed_activation_zero_point(bits)
// (int8_isa.h), as uint8: codes[i] = c + z, c the signed code above. bits 1..8.
void quantize_to_shifted_codes(const float* x, uint8_t* codes, int64_t n, float range, int bits);

} // namespace mps::qnet
