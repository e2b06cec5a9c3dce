#pragma once
// Policy files: a bit-width policy with the model it belongs to, the quantizers it assumes and the
// figures it scored, as YAML (format and example: docs/policy-format.md).
//
// Reading validates everything against the model and reports every problem at once as a
// YamlError (yaml_problems.h), one per line, "<file>:<line>:<column>: <problem>; <fix>" (1-based
// position of the offending key or value): unsupported version, model hash mismatch, unknown
// quantizer or argument, unknown / duplicate / missing layer, wrong kernel count, bit-width out of
// range, a value of the wrong type, an unknown key (typos must not be silently ignored). Malformed
// YAML is the one problem of its file; a file made for another model (hash mismatch) is not
// checked against this model's layers.
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/costs.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <optional>
#include <string>

namespace mps {

inline constexpr int policy_file_version = 1;

// What the policy scored. Every field is optional on read; the writer writes the present ones.
struct PolicyMetrics {
    std::optional<double> accuracy;       // top-1, percent
    std::optional<std::string> split;     // the split the accuracy was measured on
    std::optional<int64_t> bitops;
    std::optional<double> relative_bitops;
    std::optional<double> weight_bytes;
    std::optional<double> relative_weight_bytes;
    std::optional<int64_t> macs;
    bool operator==(const PolicyMetrics&) const = default;
};

// The cost figures of `costs` (accuracy and split left empty).
PolicyMetrics metrics_from_costs(const Costs& costs);

struct PolicyFile {
    std::string model_path;   // as the writer saw it (informative; the hash is what is checked)
    std::string model_sha256; // 64 lowercase hex digits
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}};
    QuantizerSpec activation_calibration{"max", {}};
    BitPolicy policy;
    std::optional<PolicyMetrics> metrics;
    bool operator==(const PolicyFile&) const = default;
};

// Writes `file` to `path` atomically (a temporary file in the same directory, then rename), so a
// reader never sees half a file. Throws mps::Error naming the path on I/O failure.
void write_policy_file(const std::string& path, const PolicyFile& file);

// Reads and validates `path` against `graph` (BN-folded, shapes inferred) and the model file
// `model_path`, whose SHA-256 must equal the file's (an empty model_path skips that check, for
// graphs built in memory). The returned policy is in graph order and passes policy.validate(graph).
PolicyFile read_policy_file(const std::string& path, const Graph& graph,
                            const std::string& model_path);

} // namespace mps
