#pragma once
// What oneDNN's int8 kernels compute on the CPU they run on, and the form the integer path gives
// a layer so that its int32 accumulators are exact on every x86-64 ISA oneDNN supports.
//
// oneDNN 2.6 sums u8 x s8 products in 32 bits (vpdpbusd) from avx512_core_vnni on. Below that:
//   - an s8 source is shifted by +128 inside the kernel and, so that the shifted products fit,
//     the weights are scaled by 0.5 when reordered (platform::s8s8_weights_scale_factor): odd
//     codes are rounded, so every layer with a signed input computes a different function;
//   - u8 x s8 products are added in pairs in saturating int16 (vpmaddubsw), so a pair sum above
//     32767 is clipped.
// Below avx512_core_vnni the integer path therefore never hands oneDNN an s8 source: a signed
// b-bit code c goes in as the u8 code c + z with z = 2^(b-1) (z = 1 at 1 bit), the zero point
// taken back out exactly (convolutions: oneDNN's runtime source zero point, which also treats
// spatial padding as code z; inner products: -z * sum(w) added to the int32 sum). And a layer
// whose largest source code a and weight code w could give a pair sum 2 * a * w above 32767
// runs on the float path, with that reason in its path decision. Both rules depend only on the
// ISA, the bit-widths and the input's signedness, never on the data, so scores are the same on
// every CPU.
#include <string>

namespace mps {

struct Int8Isa {
    std::string name;          // oneDNN's effective ISA: "avx512_core_amx", "avx2", ...
    bool exact_s8_source = false; // avx512_core_vnni and newer: s8 sources used as they are
    bool exact_pair_sums = false; // products summed in 32 bits: no int16 pair saturation
};

// The ISA oneDNN reports now (dnnl::get_effective_cpu_isa, which honours DNNL_MAX_CPU_ISA).
Int8Isa int8_isa();
// The name oneDNN's documentation uses for the effective ISA, e.g. "avx512_core_vnni".
std::string effective_isa_name();

// The zero point of a signed b-bit activation handed over as u8: 2^(b-1), 1 for b = 1.
int signed_activation_zero_point(int bits);
// The largest u8 code the integer path hands oneDNN for a b-bit input (1 <= b <= 8): 2^b - 1
// unsigned or shifted signed (2 for shifted signed 1-bit), 2^(b-1) - 1 for unshifted s8.
int largest_source_code(int bits, bool is_signed, bool shifted);
// The largest |code| of b-bit uniform weights (0 <= b <= 8): 2^(b-1) - 1, 1 for b = 1, 0 for 0.
int largest_weight_code(int bits);
// True when no pair of products a * w can exceed int16: 2 * a * w <= 32767.
bool pair_sums_fit_int16(int largest_source, int largest_weight);

} // namespace mps
