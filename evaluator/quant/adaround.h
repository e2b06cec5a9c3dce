#pragma once
// AdaRound (Nagel et al., ICML 2020, "Up or Down? Adaptive Rounding for Post-Training
// Quantization"): for kernels that share one input second moment H, each weight's rounding (down
// or up on the kernel's symmetric grid) learned to minimise the layer-output error
// (w - w~)^T H (w - w~) instead of the weight error. The optimisation of quantizer_adaround.cpp;
// docs/quantizers.md, "adaround", states the formulas.
//
// Per kernel, in units of its step s (x = w / s in float32, as `uniform`'s codes):
//   free weights (-qmax <= floor(x) < qmax): code floor(x) + h, h = clip(sigmoid(V) * (zeta -
//   gamma) + gamma, 0, 1), zeta = 1.1, gamma = -0.1, V starting where h = x - floor(x);
//   the others are fixed at their clamped code (-qmax or qmax);
//   d = x - code, loss = d^T (H / c) d + lambda * sum over free (1 - |2h - 1|^beta), c the mean of
//   H's diagonal (so the loss does not depend on the data's or the weights' scale).
// Adam on V for `iterations` steps; the first `warmup` share without the regulariser, then beta
// falls linearly from beta_start to beta_end; finally h >= 0.5 rounds up, and a kernel whose
// learned codes have more output error d^T H d than round-to-nearest's keeps the nearest codes
// (so adaround is never worse than `mse` / `uniform` on a kernel's output error).
// Kernels are independent (their losses separate), so a kernel's codes do not depend on which
// others are optimised with it, nor on the threads: all float32 arithmetic in a fixed order, one
// ordered matrix product (evaluator/base/ordered_gemm.h) per step for a block of kernels.
#include <cstdint>
#include <span>
#include <vector>

namespace mps {

struct AdaRoundOptions {
    int iterations = 500;
    // Weight of the rounding regulariser. The paper's 0.01 weighs its unnormalised output MSE;
    // against this normalised loss 0.01 left most roundings undecided until the last steps.
    float lambda = 1.0f;
    float learning_rate = 0.01f;
    float warmup = 0.2f;      // share of the iterations without the regulariser
    float beta_start = 20.0f, beta_end = 2.0f;
};

// The learning problem of `kernels` kernels of `size` weights each (row-major in `weights`) that
// share the input moment matrix `moments` (size x size), on the grids of `scales` (one per kernel;
// a kernel of scale 0 maps to codes 0) at `bits` in 2..16.
class AdaRoundProblem {
public:
    AdaRoundProblem(std::span<const float> weights, int64_t size, std::span<const float> scales,
                    int bits, std::span<const double> moments);
    int64_t kernels() const { return kernels_; }
    int64_t size() const { return size_; }
    // V with h(V) = x - floor(x) for every free weight (0 for fixed ones).
    std::vector<float> initial_v() const;
    // The loss of each kernel at `v` (regulariser weighted by `lambda` at `beta`; lambda 0: none)
    // and into `gradient` d(sum of the losses) / dV (0 for fixed weights).
    std::vector<double> loss_and_gradient(std::span<const float> v, float beta, float lambda,
                                          std::span<float> gradient) const;
    // The codes at `v`: floor(x) + (h >= 0.5) for free weights, the clamped code for fixed ones.
    std::vector<int32_t> codes(std::span<const float> v) const;
    // clamp(round_half_even(x), -qmax, qmax): `uniform`'s codes on this grid.
    std::vector<int32_t> nearest_codes() const;
    // The output error d^T H d (in units of the step, H as given) of kernel k at `codes`.
    double output_error(int64_t k, std::span<const int32_t> codes) const;

private:
    int64_t kernels_, size_;
    int qmax_;
    std::vector<float> x_;      // w / s
    std::vector<float> scales_;
    std::vector<float> floor_;  // floor(x), or the clamped code of a fixed weight
    std::vector<uint8_t> free_; // 1: the rounding is learned
    std::vector<float> h_;      // H / c, float32 (zeros when c = 0)
    std::span<const double> moments_;
};

// The learned codes of every kernel (kernels x size, row-major): Adam over `options.iterations`
// steps, kernels in blocks run in parallel (oneTBB); the same codes whatever the threads.
std::vector<int32_t> adaround_codes(std::span<const float> weights, int64_t size,
                                    std::span<const float> scales, int bits,
                                    std::span<const double> moments,
                                    const AdaRoundOptions& options);

// The rectified sigmoid h(V) = clip(sigmoid(V) * 1.2 - 0.1, 0, 1).
float adaround_h(float v);

} // namespace mps
