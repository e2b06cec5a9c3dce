#pragma once
// QuantizedNetwork: runs a BN-folded Graph under a BitPolicy, computing exactly the function of
// docs/semantics.md, "The quantized network" (weights quantize-dequantized per kernel by the
// chosen weight quantizer, the input of every quantizable layer fake-quantized per tensor with its
// calibrated range and the layer's activation bit-width; everything else float32).
//
// Three execution paths compute that same function:
//   - ExecutionPath::fake: float32 oneDNN primitives on quantize-dequantized weights and
//     activations. Serves every quantizer and bit-width.
//   - ExecutionPath::integer: a layer whose weights use the `uniform` quantizer with 0..8 bits
//     (1-bit: codes +-1, scale mean|w|) and whose input activation has 1..8 bits runs as a
//     oneDNN int8 primitive (nhwc, VNNI brgconv) on the codes, in the form int8_isa.h picks for
//     the CPU (below avx512_core_vnni: signed inputs as u8 with a zero point, W8 x A8 on float);
//     the per-kernel factors s_x * s_w[k] and the bias are binary post-ops supplied at run time
//     (oneDNN 2.6 has no runtime output scales for convolutions), so one primitive serves every
//     candidate of that shape; ReLU/Clip fused. Where a code chain (code_chains.h) leads to the
//     next integer layer, the producer writes that layer's codes itself (requantization fused as
//     post-ops, the chain's max pools on codes); elsewhere its output is float32 and the next
//     layer quantizes it to codes in one vectorized pass. Other layers fall back to float inside
//     the same graph.
//   - ExecutionPath::reference: every quantizable layer through evaluator/ref/'s plain loops.
// A layer's forms go in order, integer, float, reference: one that declines (or that oneDNN
// cannot build) passes the layer to the next; path_decisions() says which and why ("conv3:
// 16-bit weights, float path").
//
// Lifetime: construct once per (model, calibration, quantizers, path, batch); call set_policy()
// for each candidate (cheap when weights come from the shared WeightCache), then run() batches.
// One instance serves one thread; parallel evaluation uses one instance per worker and shares the
// WeightCache and the Calibration, which are thread-safe / immutable.
//
// Incremental evaluation: layers are numbered in graph order (the order of
// quantizable_layers(graph)). capture(L) returns the values (ActivationCut) live just before
// quantizable layer L for the images of the last run(); resume(L, cut, n) recomputes only from
// layer L on, given such a cut, and returns the same logits run() would have (bit-identical:
// the prefix does not depend on bits of layers >= L, except for the codes of the chains crossing
// the cut, which depend on their consumers' bits too: code_chains.h's cut_dependencies()).
#include "evaluator/data/dataset.h"
#include "evaluator/engine/calibrate.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/execution_path.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/calibration.h"
#include "evaluator/quant/quantizer.h"
#include "evaluator/quant/weight_cache.h"

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

namespace mps {

// The values live at a cut before one quantizable layer, for n images: float32, except those
// a code chain (code_chains.h) carried as 8-bit codes in that run, kept as the network's raw
// buffer (valid only for a network of the same model, path and batch size).
struct ActivationCut {
    int layer = 0;
    int64_t images = 0;
    std::map<std::string, Tensor> values;              // value name -> {n, per-image shape...}
    std::map<std::string, std::vector<uint8_t>> codes; // value name -> codes, raw
    int64_t bytes() const;
};

class QuantizedNetwork {
public:
    QuantizedNetwork(const Graph& folded, std::shared_ptr<const Calibration> calibration,
                     std::shared_ptr<WeightCache> weights, ExecutionPath path, int64_t batch);
    ~QuantizedNetwork();
    QuantizedNetwork(const QuantizedNetwork&) = delete;
    QuantizedNetwork& operator=(const QuantizedNetwork&) = delete;

    // Validates `policy` against the graph (mps::Error on mismatch) and installs its weights and
    // activation bit-widths.
    void set_policy(const BitPolicy& policy);
    // Logits [n, classes] of n <= batch images (NCHW float32); valid until the next call.
    const float* run(const float* images, int64_t n);

    ActivationCut capture(int layer) const;
    const float* resume(const ActivationCut& cut);

    // Each layer's path and why (and what its primitive fuses), as run() on a full batch settles
    // it for the current policy.
    std::vector<std::string> path_decisions();
    // Fusion on (the default) or off: requantization into the producing layer (code chains) and
    // residual adds into the integer conv before them. Off, every integer layer writes float32,
    // the next quantizes it, and each residual add runs as its own primitive: the two compute the
    // same logits bit for bit; off is for tests and benchmarks. Call it before the first
    // set_policy() (plans build their primitives on first use).
    void set_fusion(bool on);
    int64_t batch() const;
    int64_t num_classes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
