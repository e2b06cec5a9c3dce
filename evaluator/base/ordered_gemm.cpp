// ordered_gemm_accumulate: a blocked i-p-j loop. This file is compiled with -ffp-contract=off
// (evaluator/CMakeLists.txt): GCC would otherwise fuse a * b + c into one FMA in the AVX2 and
// AVX-512 copies, which rounds once where the baseline copy rounds twice.
#include "evaluator/base/ordered_gemm.h"

#include <algorithm>

namespace mps {

namespace {

// Rows of C updated together (each row of B read once per block) and columns per block (the
// block's C rows stay in the L1 cache).
constexpr int64_t row_block = 4;
constexpr int64_t column_block = 512;

inline void gemm_body(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                      const float* b, int64_t ldb, float* c, int64_t ldc) {
    for (int64_t j0 = 0; j0 < n; j0 += column_block) {
        const int64_t j1 = std::min(n, j0 + column_block);
        for (int64_t i0 = 0; i0 < m; i0 += row_block) {
            const int64_t i1 = std::min(m, i0 + row_block);
            for (int64_t p = 0; p < k; ++p) {
                const float* b_row = b + p * ldb;
                for (int64_t i = i0; i < i1; ++i) {
                    const float a_ip = a[i * lda + p];
                    float* c_row = c + i * ldc;
                    for (int64_t j = j0; j < j1; ++j) c_row[j] += a_ip * b_row[j];
                }
            }
        }
    }
}

using Gemm = void (*)(int64_t, int64_t, int64_t, const float*, int64_t, const float*, int64_t,
                      float*, int64_t);

void gemm_baseline(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda, const float* b,
                   int64_t ldb, float* c, int64_t ldc) {
    gemm_body(m, n, k, a, lda, b, ldb, c, ldc);
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) void gemm_avx512(int64_t m, int64_t n, int64_t k,
                                                    const float* a, int64_t lda, const float* b,
                                                    int64_t ldb, float* c, int64_t ldc) {
    gemm_body(m, n, k, a, lda, b, ldb, c, ldc);
}

__attribute__((target("avx2"))) void gemm_avx2(int64_t m, int64_t n, int64_t k, const float* a,
                                               int64_t lda, const float* b, int64_t ldb, float* c,
                                               int64_t ldc) {
    gemm_body(m, n, k, a, lda, b, ldb, c, ldc);
}
#endif

Gemm best_gemm() {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f")) return gemm_avx512;
    if (__builtin_cpu_supports("avx2")) return gemm_avx2;
#endif
    return gemm_baseline;
}

} // namespace

void ordered_gemm_accumulate(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                             const float* b, int64_t ldb, float* c, int64_t ldc) {
    static const Gemm gemm = best_gemm();
    gemm(m, n, k, a, lda, b, ldb, c, ldc);
}

} // namespace mps
