#pragma once
// WeightCache: quantize-dequantized weights per (layer, per-kernel bit vector), shared by every
// worker of an evaluation.
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mps {

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
    std::shared_ptr<const WeightQuantizer> shared_quantizer() const; // for another cache or network
    int64_t hits() const;
    int64_t misses() const;
    int64_t bytes() const;   // bytes of the weights held now
    int64_t entries() const; // entries held now

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
