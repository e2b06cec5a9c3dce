#pragma once
// The run loop of `mpsearch search`: one search from a RunConfig to a finished run directory.
//
//   1. The run directory gets config.yaml (the config's text; --resume reads it back) and
//      archive.jsonl (search/archive.h), appended and fsync'd batch by batch.
//   2. The FP32 network is scored on the validation split (the reference for accuracy drops and
//      divergences). Then the policy proposes batches, each scored in one parallel
//      Evaluator::evaluate call on the validation split, until the policy finishes or the budget
//      (max_evaluations, max_seconds) is spent.
//   3. The pick (policies/search_space.h) over every search evaluation is written as policy.yaml
//      and scored once on the test split; FP32 and the uniform baselines are scored on both splits.
//   4. pareto.csv, pareto.svg, summary.json and report.md are written (search/report.h).
//
// Resume replays: a fresh policy proposes again from the start, and every batch the archive
// already holds is handed back from the archive instead of being evaluated (the candidates must
// match, else the archive belongs to another config: an error). Policies are deterministic and
// scores are bit-identical whatever the worker count, so a run killed at any moment and resumed
// ends exactly as an uninterrupted run with the same config — except a run stopped by
// max_seconds, whose stopping point depends on the clock.
#include "search/run_config.h"
#include "search/run_result.h"

#include "evaluator/engine/evaluator.h"

#include <functional>
#include <iosfwd>
#include <string>

namespace mps {

struct RunOptions {
    bool resume = false;  // continue the run in config.output_dir from its archive
    bool quiet = false;   // no progress output
    std::ostream* log = nullptr; // progress and messages (nullptr: std::cerr)
    // Benchmarks only: adjusts the evaluator's options after the config has set them (e.g. the
    // incremental cache's threshold, which is not a config key).
    std::function<void(EvaluatorOptions&)> tune_evaluator;
};

// Runs the search; returns what the output files describe. Throws mps::Error for an output
// directory that already holds a run (without resume), or one that holds none (with resume).
RunResult run_search(const RunConfig& config, const RunOptions& options);

// "mpsearch 0.1, oneDNN 3.0.0, oneTBB 2021.8.0" (what the report records).
std::string version_text();

} // namespace mps
