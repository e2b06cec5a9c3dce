#pragma once
// An AIMET-style encodings sidecar (JSON, "version": "0.6.1": `param_encodings` and
// `activation_encodings`, one entry per channel / tensor with bitwidth, scale, offset, min, max,
// is_symmetric, dtype) for a policy, as far as that format can express it: uniform weights at 4 to
// 16 bits, activations at 4 to 16 bits. Keys are the tensor names of the quantized export
// (onnx_export_quantized.h): "<layer>.weight" and the float value each layer reads ("input" for
// the graph input). What it cannot express (kernels at 0 to 3 bits, inputs at 1 to 3 bits,
// quantizers without a uniform grid) is left out and listed in `omitted`, one line each.
//
// Grids: a weight kernel at b bits is symmetric, offset -2^(b-1), scale s_w (mpsearch never uses
// the code -2^(b-1)); an unsigned input has offset 0, a signed one offset -2^(b-1) with
// is_symmetric "True"; min = scale * offset, max = scale * (offset + 2^b - 1).
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/calibration.h"
#include "evaluator/quant/quantizer.h"

#include <string>
#include <vector>

namespace mps {

struct AimetEncodings {
    std::string json;                 // the document, pretty-printed
    std::vector<std::string> omitted; // what the format cannot express, one line each
};

AimetEncodings aimet_encodings(const Graph& folded, const BitPolicy& policy,
                               const WeightQuantizer& quantizer, const Calibration& calibration);

} // namespace mps
