#pragma once
// RunConfig: a search run's YAML configuration, read and validated (docs/config.md documents
// every key; configs/quickstart.yaml is an annotated example).
//
// load_run_config() reports every problem of a file at once, each as
//   <file>:<line>:<column>: <key.path>: <problem>; <fix>
// (1-based line and column of the offending key or value): malformed YAML, unknown key (with
// "did you mean '<closest>'?" when one is close), wrong type, value out of range, unknown policy,
// quantizer or layer, policy parameters checked against the policy's ParamSpecs, and impossible
// constraints (a cost limit below what the all-lowest-bits policy costs, a budget of 0).
//
// Paths inside the file (model, data.dir and the data splits, output) are relative to the current directory. A model
// given as a bare zoo name (no '/' and no ".onnx", e.g. `resnet8`) is models/<name>.onnx of the
// source tree (MPSEARCH_MODELS_DIR, compiled in), or of $MPSEARCH_MODELS when that is set.
#include "evaluator/base/error.h"
#include "evaluator/data/data_source.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/io/policy_file.h"
#include "evaluator/io/yaml_problems.h"
#include "evaluator/ir/graph.h"
#include "policies/policy.h"
#include "policies/search_space.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mps {

struct RunConfig {
    std::string source_path;   // the YAML file as given
    std::string source_text;   // its whole text (copied into the run directory, echoed in reports)

    // model
    std::string model;         // as written
    std::string model_path;    // resolved ONNX path
    Graph graph;               // imported, BN-folded, shapes inferred

    // data
    DataSource data;           // idx files of data.dir (default), or image folders / arrays
    int64_t calibration_images = 1000;
    // The first N images of the validation split: idx 1..5000 (default 5000); other data: 0 =
    // all of it (the default)
    int64_t validation_images = 5000;

    // quantizers
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}};
    QuantizerSpec activation_calibration{default_calibration_rule, {}};
    ExecutionPath path = ExecutionPath::integer;

    // search space and constraints (pins resolved to node names: `first` and `last` name the
    // first and last quantizable layers)
    SearchSpace space;
    Objective objective = Objective::accuracy; // default: accuracy, or relative_bitops when the
                                               // only constraint is max_accuracy_drop
    // uniform (weight, activation) baselines the report shows; default: every b in both allowed
    // lists as WbAb, highest first
    std::vector<UniformBits> baselines;

    // policy
    std::string policy_name;
    ParamValues policy_params; // validated, defaults filled

    // budget and execution
    int64_t max_evaluations = 200;
    std::optional<double> max_seconds;
    int64_t batch = 32;        // most candidates one evaluate() call receives
    uint64_t seed = 1;
    int workers = 2;
    std::string output_dir;    // default: runs/<file stem>
};

// One problem of a config (a missing key is placed at its parent's mark), and what
// load_run_config throws: every problem found, in file order; what() is all of them, one per
// line, each as "<file>:<line>:<column>: <key_path>: <message>" (evaluator/io/yaml_problems.h).
using ConfigProblem = YamlProblem;
using ConfigError = YamlError;

// Reads and validates the config file `path` (and the model it names). Throws ConfigError (every
// problem) or mps::Error (the file cannot be read).
RunConfig load_run_config(const std::string& path);
// The same from text; `name` stands for the file in messages.
RunConfig parse_run_config(const std::string& text, const std::string& name);

// The `data` block of the YAML file `path` alone (`mpsearch eval --data-config`), read and
// checked as in a run config; `graph` is the model it feeds (the default color). Other top-level
// keys are problems. Throws ConfigError or mps::Error.
struct DataConfig {
    DataSource data;
    int64_t calibration_images = 1000;
    int64_t validation_images = 0;
};
DataConfig load_data_config(const std::string& path, const Graph& graph);

// The closest of `candidates` to `word` by edit distance when it is close enough to be a likely
// typo (distance <= max(1, |word| / 3)), else empty.
std::string did_you_mean(const std::string& word, std::span<const std::string> candidates);

} // namespace mps
