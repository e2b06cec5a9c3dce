#pragma once
// calibrate(): a Calibration (evaluator/quant/calibration.h) observed on the float32 InferenceEngine.
#include "evaluator/data/dataset.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/calibration.h"

#include <cstdint>

namespace mps {

// Runs the float32 network (oneDNN, batches of `batch`) over every calibration image and observes
// the input value of every quantizable layer (a value read by several layers once). `folded` must
// have its shapes inferred; the images must match its input shape (mps::Error otherwise).
Calibration calibrate(const Graph& folded, const Dataset& calibration_images,
                      const CalibrationMethod& method, int64_t batch = 256);

} // namespace mps
