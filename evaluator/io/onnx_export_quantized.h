#pragma once
// Export of a model under a bit-width policy as a standard ONNX model (opset 13 by default) whose
// arithmetic is mpsearch's quantized network (docs/semantics.md) as `mpsearch eval --path int`
// runs it: the contract, the placement of QuantizeLinear / DequantizeLinear and the one rounding
// that differs (int32 biases of fused layers) are in docs/export.md; the per-layer decisions in
// export_plan.h.
//
// The graph: input "input" [batch, C, H, W] float32, output "logits" [batch, classes]; one
// Conv / Gemm / Relu / Clip / MaxPool / ... per node of the BN-folded graph, under its name; each
// quantizable layer's input through QuantizeLinear -> Clip -> DequantizeLinear, its weights int8
// codes through DequantizeLinear (axis 0, one scale per kernel) where they have an integer form,
// float32 otherwise. metadata_props record the policy, the quantizers, the calibration, the
// source model's SHA-256 and every layer left in float (key "mpsearch.*").
#include "evaluator/io/policy_file.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/calibration.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mps {

// Where the policy and its quantizers came from: recorded in the model's metadata.
struct QuantizedExportInfo {
    std::string source_model_sha256;
    std::string source_model_path;
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}};
    QuantizerSpec activation_calibration{"max", {}};
    int64_t calibration_images = 0;
    // 13: int8 weight codes. 21: layers whose kernels all have at most 4 bits store their codes
    // as INT4 (ONNX Runtime 1.31 then dequantizes them rather than fusing the layer).
    int opset = 13;
    // false: no layer output is quantized, so every bias stays float32 and ONNX Runtime fuses
    // nothing (export_plan.h, "Fusion").
    bool fuse = true;
};

// What a policy file says of the model and quantizers its policy was scored with, plus the
// calibration image count (a policy file does not record it).
QuantizedExportInfo export_info_of(const PolicyFile& file, int64_t calibration_images);

struct QuantizedModel {
    std::string bytes;              // the serialized ModelProto
    std::vector<std::string> notes; // one line per layer not on integer weights and inputs
    int layers = 0;                 // quantizable layers
    int integer_layers = 0;         // with int8 weight codes and uint8 input codes
    int fused_layers = 0;           // ... whose output is quantized too (ONNX Runtime's QLinear*)
};

// Throws mps::Error when `policy` does not fit `folded` (naming the layer) or the opset is not
// 13 or 21.
QuantizedModel export_quantized_onnx_bytes(const Graph& folded, const BitPolicy& policy,
                                           const WeightQuantizer& quantizer,
                                           const Calibration& calibration,
                                           const QuantizedExportInfo& info);
// The same written to `path` atomically (no partial file on failure: mps::Failure naming it).
QuantizedModel export_quantized_onnx(const Graph& folded, const BitPolicy& policy,
                                     const WeightQuantizer& quantizer,
                                     const Calibration& calibration,
                                     const QuantizedExportInfo& info, const std::string& path);

} // namespace mps
