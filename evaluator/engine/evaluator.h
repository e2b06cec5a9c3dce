#pragma once
// Evaluator: scores bit-width policies of one model on a data split (accuracy, loss, costs), many
// candidates at a time, in parallel, reusing everything that can be reused across candidates.
//
// Built once per run: loads the validation and test splits, calibrates the activation ranges once
// on the calibration images, shares one WeightCache and one Calibration between its workers, each
// of which owns one QuantizedNetwork (primitives created once and reused for every candidate).
//
// Parallelism: evaluate() runs in a oneTBB task_arena of `workers` threads. A candidate's score
// is computed by one network at a time over the split's batches in a fixed order (batch i is
// always images [i * batch, (i + 1) * batch)), and the per-batch figures are summed in batch
// order, so scores are bit-identical whatever the worker count and the scheduling. With fewer
// candidates than workers, the batches of a candidate are spread over the workers (still summed
// in batch order). Inside each worker oneDNN runs with `onednn_threads` OpenMP threads
// (default 1: TBB owns the cores; docs/evaluator.md has the measurements behind that choice).
//
// Incremental evaluation: when a candidate agrees with a previously seen one on every layer
// before quantizable layer L, the activations live before L (QuantizedNetwork::capture) are reused
// pass by pass and only layers >= L are recomputed (resume). Cuts are kept in an LRU cache
// bounded by `incremental_cache_bytes`, keyed by (split, pass, L, bits of the layers < L). A cut
// is captured only where it can pay off: at a layer L whose prefix (the bits of layers < L) is
// shared with another candidate, earlier or in the same call, and whose recomputation costs
// enough MACs per byte of cut (`incremental_min_macs_per_byte`). Resumed results are bit-identical to
// full runs (QuantizedNetwork's contract; tested).
#include "evaluator/data/data_source.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/costs.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/score.h"
#include "evaluator/quant/quantizer.h"

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mps {

struct EvaluatorOptions {
    int64_t calibration_images = 1000;
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}};
    QuantizerSpec calibration_method{default_calibration_rule, {}};
    ExecutionPath path = ExecutionPath::integer;
    int workers = 2;
    int64_t batch = 256;       // images per scoring batch: the unit of work and of the sums
    // Images per network pass: a batch runs as passes of this many images, whose activations stay
    // in the caches (at 256 they do not). The integer kernels' logits do not depend on it;
    // oneDNN's float32 kernels may round differently at another size (docs/evaluator.md,
    // "Passes"), so it is part of the arithmetic, like `batch`.
    int64_t pass_images = default_pass_images;
    int64_t incremental_cache_bytes = int64_t{2} << 30; // 0 turns incremental evaluation off
    // A cut is stored only where resuming saves at least this many MACs per image per byte it
    // holds. On greedy's descent with passes of 32 images, 0, 16 and 64 measured alike and 256
    // 26 % slower (docs/evaluator.md, "Incremental evaluation"). 0 stores every useful cut.
    int64_t incremental_min_macs_per_byte = 16;
    int64_t weight_cache_bytes = int64_t{1} << 30;
    int onednn_threads = 1; // OpenMP threads per worker inside evaluate(); 0 = OpenMP's default
    // Where a data-aware weight quantizer (adaround) keeps what it learned per layer and
    // bit-width, to be read back by later evaluators (a search's run directory); "" = in memory.
    std::string quantizer_cache_dir;
};

// The quantizer_cache_dir of a search: this directory in its run directory. `mpsearch eval` and
// `export` of a policy file read the one beside the file when it exists.
inline constexpr const char* learned_codes_dir_name = "learned_codes";

// The images an Evaluator scores on; tests inject small ones.
struct EvaluationData {
    Dataset calibration;
    Dataset validation;
    Dataset test;
};
// Fashion-MNIST's calibration (first `calibration_images` training images), validation and test
// splits from `dir`.
EvaluationData load_evaluation_data(const std::string& dir, int64_t calibration_images = 1000);
// The same splits from any data source (evaluator/data/data_source.h); `classes` is the model's
// number of outputs. Idx files load exactly as above.
EvaluationData load_evaluation_data(const DataSource& data, int64_t calibration_images,
                                    int64_t classes);

// mps::Error unless `images` fit the model's input (a folded graph): one message naming both
// shapes and, for image folders and arrays, the data.preprocess key that makes them fit.
void check_data_fits(const Graph& graph, const std::string& model_path, const DataSource& data,
                     const Dataset& images);

// Counters of the incremental cache since construction.
struct IncrementalStats {
    int64_t passes_full = 0;    // network passes run from the first layer
    int64_t passes_resumed = 0; // passes resumed from a cached cut
    int64_t layers_skipped = 0; // quantizable layers not recomputed thanks to resumed passes
    int64_t captures = 0;        // cuts stored
    int64_t evictions = 0;
    int64_t bytes = 0;           // bytes held now
};

class Evaluator {
public:
    // `folded`: BN-folded, shapes inferred. `model_path` is kept for reports and policy files.
    Evaluator(Graph folded, std::string model_path, const std::string& data_dir,
              EvaluatorOptions options = {});
    Evaluator(Graph folded, std::string model_path, EvaluationData data,
              EvaluatorOptions options = {});
    ~Evaluator();
    Evaluator(const Evaluator&) = delete;
    Evaluator& operator=(const Evaluator&) = delete;

    // Scores every candidate on `split` (validation or test); scores[i] belongs to candidates[i].
    // Every policy is validated first (mps::Error naming the candidate index and the problem).
    std::vector<Score> evaluate(std::span<const BitPolicy> candidates, Split split);
    Score evaluate(const BitPolicy& candidate, Split split);

    // What the network does for `policy`, layer by layer ("conv3: 16-bit weights, float path").
    // Not to be called concurrently with evaluate().
    std::vector<std::string> path_decisions(const BitPolicy& policy);

    const Graph& graph() const;
    const std::string& model_path() const;
    const EvaluatorOptions& options() const;
    const Calibration& calibration() const;
    double calibration_seconds() const;
    const Dataset& data(Split split) const; // validation or test
    IncrementalStats incremental_stats() const;
    const WeightCache& weight_cache() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
