#pragma once
// InferenceEngine: float32 forward passes of a Graph on oneDNN (CPU).
//
// Construction copies the graph, infers shapes, folds the batch_norms (fold_batch_norm: into their
// convs, or as channel_affine steps where no conv can absorb them), creates the
// primitives for `batch` images and reorders the weights once into the layouts the primitives
// chose. Activations stay in oneDNN's blocked layout nChw16c from the first conv to the inner
// product (a 1-channel input is read in place as nchw), so a zoo model runs without any reorder
// per batch; ReLU / Clip are fused into the preceding conv / inner product / add as eltwise
// post-ops, and a residual add into the conv producing one of its operands as a sum post-op
// (accumulating in place when nothing reads the other operand afterwards).
//
// run() takes n <= batch images, NCHW float32, contiguous, and returns the logits [n, classes]
// (row-major). The pointer stays valid until the next call to run() or the engine's destruction.
// A batch of another size (e.g. the partial last batch) gets its own primitives, created on first
// use and cached by size.
//
// Not thread-safe: one engine serves one caller at a time. Threads: oneDNN's OpenMP default.
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <memory>

namespace mps {

class InferenceEngine {
public:
    InferenceEngine(const Graph& graph, int64_t batch);
    ~InferenceEngine();
    InferenceEngine(const InferenceEngine&) = delete;
    InferenceEngine& operator=(const InferenceEngine&) = delete;

    const float* run(const float* images, int64_t n);
    // Creates the primitives for batches of n images now rather than on the first run() of that
    // size (e.g. for the partial last batch, to keep primitive creation out of timed runs).
    void prepare(int64_t n);

    int64_t batch() const;
    int64_t num_classes() const;
    // Floats per input image (C * H * W of the graph input).
    int64_t image_size() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
