#pragma once
// The calibration data of data-aware weight quantizers (adaround): per conv / fully connected
// layer, the second moment H = E[x x^T] of its float32 input patches over the calibration images
// (evaluator/quant/layer_data.h), computed on the float32 InferenceEngine as calibrate() does.
#include "evaluator/data/dataset.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/layer_data.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <memory>
#include <string>

namespace mps {

// Patches per group of a conv: about this many in all, n = ceil(max_patches / images) per image
// (at least 1, at most every output position), evenly spaced (positions offset + j * step,
// step = positions / n, offset = image index mod step, so that successive images cover different
// positions). A fully connected layer has one input per image. 16,384 patches estimate the
// 576 x 576 H of resnet8's widest conv well and keep its cost to seconds.
inline constexpr int64_t default_max_patches = 16384;

// H of `layer` (a conv or fully connected node of `folded`, shapes inferred) over `images`.
// A conv's patch is its im2col row: the kh x kw window of the group's input channels in the
// weight's order [c][i][j], zero where it covers padding. Patches are summed in a fixed order
// (image, position), in float32 products over chunks of 64 patches (ordered_gemm.h) added into
// double, then divided by their count: the same bits whatever the threads.
LayerInputMoments input_moments(const Graph& folded, const Node& layer, const Dataset& images,
                                int64_t max_patches = default_max_patches,
                                int64_t batch = 256);

// The LayerDataSource of one model and its calibration images: input moments computed per layer
// on first request (thread-safe), learned results kept under `cache_dir` ("" = memory only).
class CalibrationLayerData final : public LayerDataSource {
public:
    CalibrationLayerData(Graph folded, std::shared_ptr<const Dataset> images, std::string cache_dir);
    ~CalibrationLayerData() override;
    const Graph& graph() const override;
    std::shared_ptr<const LayerInputMoments> input_moments(const std::string& layer) const override;
    const std::string& fingerprint() const override;
    const std::string& cache_dir() const override;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

// The weight quantizer `spec` names; one that learns from data is bound to `folded` and its
// calibration images (which it then keeps), the others ignore them.
std::shared_ptr<const WeightQuantizer> make_prepared_quantizer(const QuantizerSpec& spec,
                                                               const Graph& folded,
                                                               std::shared_ptr<const Dataset> images,
                                                               const std::string& cache_dir = "");

} // namespace mps
