#pragma once
// QuantizedNetwork: runs a BN-folded Graph under a BitPolicy, computing exactly the function of
// docs/semantics.md, "The quantized network" (weights quantize-dequantized per kernel by the
// chosen weight quantizer, the input of every quantizable layer fake-quantized per tensor with its
// calibrated range and the layer's activation bit-width; everything else float32).
//
// Two execution paths compute that same function:
//   - ExecutionPath::fake: float32 oneDNN primitives on quantize-dequantized weights and
//     activations. Serves every quantizer and bit-width; the reference.
//   - ExecutionPath::integer: a layer whose weights use the `uniform` quantizer with 0..8 bits
//     (1-bit: codes +-1, scale mean|w|) and whose input activation has 1..8 bits runs as a
//     oneDNN u8/s8 x s8 primitive (nhwc, VNNI brgconv); the per-kernel factors s_x * s_w[k] and
//     the bias are binary post-ops supplied at run time (oneDNN 2.6 has no runtime output scales
//     for convolutions), so one primitive serves every candidate of that shape; ReLU/Clip fused.
//     Its output is float32; the next layer quantizes it to codes in one vectorized pass (not
//     yet fused into the producer as a u8 requantization). Other layers fall back to float
//     inside the same graph;
//     path_decisions() says which and why ("conv3: 16-bit weights, float path").
//
// Lifetime: construct once per (model, calibration, quantizers, path, batch); call set_policy()
// for each candidate (cheap when weights come from the shared WeightCache), then run() batches.
// One instance serves one thread; parallel evaluation uses one instance per worker and shares the
// WeightCache and the Calibration, which are thread-safe / immutable.
//
// Incremental evaluation: layers are numbered in graph order (the order of
// quantizable_layers(graph)). capture(L) returns the float32 values that are live just before
// quantizable layer L for the images of the last run(); resume(L, cut, n) recomputes only from
// layer L on, given such a cut, and returns the same logits run() would have (bit-identical:
// the prefix does not depend on bits of layers >= L).
#include "evaluator/activation_range.h"
#include "evaluator/bit_policy.h"
#include "evaluator/dataset.h"
#include "evaluator/graph.h"
#include "evaluator/quantizer.h"

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <memory>
#include <string>
#include <vector>

namespace mps {

enum class ExecutionPath { integer, fake };
const char* execution_path_name(ExecutionPath path); // "int", "fake"
ExecutionPath parse_execution_path(const std::string& name); // "int" | "fake"; mps::Error else

// Memo of computed ranges, safe to use from many threads; a copy starts empty (the ranges are a
// pure function of the observers, so nothing is lost).
class RangeMemo {
public:
    RangeMemo() = default;
    RangeMemo(const RangeMemo&) {}
    RangeMemo& operator=(const RangeMemo&);
    ~RangeMemo();
    // The memoized value for (value, bits), computing it with `compute` on first use.
    float get(const std::string& value, int bits, const std::function<float()>& compute) const;

private:
    mutable std::mutex mutex_;
    mutable std::map<std::pair<std::string, int>, float> ranges_;
};

// Calibrated activation statistics of every quantizable layer's input value, gathered once on the
// float32 network over the calibration images; immutable afterwards (range() is thread-safe).
struct Calibration {
    CalibrationMethod method;
    std::map<std::string, ActivationObserver> observers; // value name -> statistics
    std::map<std::string, bool> is_unsigned;             // value name -> non-negative by construction
    // The clipping range of `value` at `bits` under `method` (cached per (value, bits)). Throws
    // mps::Error for a value that was not calibrated.
    float range(const std::string& value, int bits) const;
    RangeMemo memo = {};
};
// Runs the float32 network (oneDNN, batches of `batch`) over every calibration image and observes
// the input value of every quantizable layer (a value read by several layers once). `folded` must
// have its shapes inferred; the images must match its input shape (mps::Error otherwise).
Calibration calibrate(const Graph& folded, const Dataset& calibration_images,
                      const CalibrationMethod& method, int64_t batch = 256);

// Quantize-dequantized weights per (layer name, weight bit vector), shared by all workers.
// Thread-safe; bounded by `max_bytes` (least recently used entries evicted; an entry handed out
// stays alive while its shared_ptr is held). Two threads missing the same key at once may both
// quantize it (the results are identical); the quantization runs outside the lock.
class WeightCache {
public:
    WeightCache(const Graph& folded, std::shared_ptr<const WeightQuantizer> quantizer,
                int64_t max_bytes = int64_t{1} << 30);
    ~WeightCache();
    // Quantize-dequantized OIHW / [out, in] weights of `layer` at per-kernel `bits`.
    std::shared_ptr<const Tensor> get(const std::string& layer, const std::vector<int>& bits);
    const WeightQuantizer& quantizer() const;
    int64_t hits() const;
    int64_t misses() const;
    int64_t bytes() const;   // bytes of the weights held now
    int64_t entries() const; // entries held now

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The float32 values live at a cut before one quantizable layer, for n images.
struct ActivationCut {
    int layer = 0;
    int64_t images = 0;
    std::map<std::string, Tensor> values; // value name -> {n, per-image shape...}
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

    std::vector<std::string> path_decisions() const;
    int64_t batch() const;
    int64_t num_classes() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
