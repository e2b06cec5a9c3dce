#pragma once
// The quantized network's function (docs/semantics.md) written naively: the
// reference ops of reference.h, weights quantize-dequantized by the weight quantizer, and the
// input of every quantizable layer fake-quantized with its calibrated range. Both execution paths
// of QuantizedNetwork are tested against it; it favours being obviously correct over being fast.
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"
#include "evaluator/quant/calibration.h"
#include "evaluator/quant/quantizer.h"

namespace mps {

// Logits {N, classes} of `input` ({N, C, H, W}) through the BN-folded `folded` graph under
// `policy` (validated against the graph; mps::Error on mismatch).
Tensor reference_quantized_forward(const Graph& folded, const Tensor& input,
                                   const BitPolicy& policy, const WeightQuantizer& quantizer,
                                   const Calibration& calibration);

} // namespace mps
