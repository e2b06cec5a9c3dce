#pragma once
// What a data-aware weight quantizer (adaround) learns from: the model's conv / fully connected
// layers and, per layer, the second moment of its float32 inputs on the calibration images. The
// engine provides it (evaluator/engine/layer_inputs.h); tests provide their own.
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace mps {

// E[x x^T] over a layer's input patches x: for a conv the im2col rows of its input (one
// size = I/groups * kh * kw vector per output position and group), for a fully connected layer its
// input vectors (size = in). The layer-output error of kernel k's weight error e is e^T H e with H
// the matrix of k's group, so one matrix per group serves every kernel and bit-width.
struct LayerInputMoments {
    int64_t groups = 1;
    int64_t size = 0;           // K: values per kernel
    std::vector<double> values; // groups x K x K, row-major, symmetric
    int64_t samples = 0;        // patches averaged (per group)
    const double* group(int64_t g) const { return values.data() + g * size * size; }
};

class LayerDataSource {
public:
    virtual ~LayerDataSource() = default;
    // The BN-folded model, shapes inferred; its conv / fully connected layers are the ones served.
    virtual const Graph& graph() const = 0;
    // The input moments of the layer named `layer`, computed on first request; thread-safe.
    // Throws mps::Error for a name that is not a conv / fully connected layer of graph().
    virtual std::shared_ptr<const LayerInputMoments> input_moments(const std::string& layer) const = 0;
    // A SHA-256 (hex) of everything the moments depend on (the model's weights, the calibration
    // images, the sampling): with the quantizer's arguments, the key of a persisted result.
    virtual const std::string& fingerprint() const = 0;
    // Where learned results are kept across runs (a directory, created when first written), or
    // "" to keep them in memory only.
    virtual const std::string& cache_dir() const = 0;
};

} // namespace mps
