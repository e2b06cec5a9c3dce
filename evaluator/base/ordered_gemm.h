#pragma once
// A float32 matrix product whose every output is one fixed sequence of roundings, so that its
// results are the same bits on every CPU and for every thread count: what data-aware quantizers
// (adaround) need to learn the same codes wherever they run. oneDNN's matmul is faster but
// reorders its sums by instruction set and threads.
#include <cstdint>

namespace mps {

// C[i][j] += sum over p = 0, 1, .., k-1 (in that order) of A[i][p] * B[p][j]: each product and
// each sum rounded to float32 separately (no fused multiply-add), starting from C's value.
// A is m x k (row stride lda), B is k x n (ldb), C is m x n (ldc); all row-major.
// The loops vectorize over j, which leaves each C[i][j]'s sequence unchanged; the fastest
// compiled copy the CPU supports is used (AVX-512, AVX2 or the build's baseline).
void ordered_gemm_accumulate(int64_t m, int64_t n, int64_t k, const float* a, int64_t lda,
                             const float* b, int64_t ldb, float* c, int64_t ldc);

} // namespace mps
