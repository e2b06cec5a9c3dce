#include "evaluator/engine/int8_isa.h"

#include "evaluator/base/error.h"

#include <oneapi/dnnl/dnnl.hpp>

namespace mps {

std::string effective_isa_name() {
    using isa = dnnl::cpu_isa;
    switch (dnnl::get_effective_cpu_isa()) {
    case isa::sse41: return "sse41";
    case isa::avx: return "avx";
    case isa::avx2: return "avx2";
    case isa::avx2_vnni: return "avx2_vnni";
    case isa::avx512_mic: return "avx512_mic";
    case isa::avx512_mic_4ops: return "avx512_mic_4ops";
    case isa::avx512_core: return "avx512_core";
    case isa::avx512_core_vnni: return "avx512_core_vnni";
    case isa::avx512_core_bf16: return "avx512_core_bf16";
    case isa::avx512_core_amx: return "avx512_core_amx";
    case isa::all: return "all";
    }
    return "unknown";
}

Int8Isa int8_isa() {
    // The ISA values are bit sets, each containing the ones below it; oneDNN scales s8 weights by
    // 0.5 unless avx512_core_vnni is among them, whatever else the CPU has (avx2_vnni included).
    const auto bits = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto vnni512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core_vnni);
    Int8Isa isa;
    isa.name = effective_isa_name();
    isa.exact_s8_source = (bits & vnni512) == vnni512;
    isa.exact_pair_sums = isa.exact_s8_source;
    return isa;
}

int signed_activation_zero_point(int bits) {
    if (bits < 1 || bits > 8)
        throw Error("signed_activation_zero_point: bit-width " + std::to_string(bits) +
                    " has no 8-bit code; use 1..8");
    return bits == 1 ? 1 : 1 << (bits - 1);
}

int largest_source_code(int bits, bool is_signed, bool shifted) {
    if (bits < 1 || bits > 8)
        throw Error("largest_source_code: bit-width " + std::to_string(bits) +
                    " has no 8-bit code; use 1..8");
    if (!is_signed) return (1 << bits) - 1;
    if (bits == 1) return shifted ? 2 : 1;
    const int qmax = (1 << (bits - 1)) - 1;
    return shifted ? qmax + signed_activation_zero_point(bits) : qmax;
}

int largest_weight_code(int bits) {
    if (bits < 0 || bits > 8)
        throw Error("largest_weight_code: bit-width " + std::to_string(bits) +
                    " has no 8-bit code; use 0..8");
    if (bits <= 1) return bits;
    return (1 << (bits - 1)) - 1;
}

bool pair_sums_fit_int16(int largest_source, int largest_weight) {
    return 2L * largest_source * largest_weight <= 32767L;
}

} // namespace mps
