#pragma once
// The run loop of `mpsearch search`: one search from a RunConfig to a finished run directory.
//
//   0. Everything that can be checked before the run directory exists is: the data (an empty or
//      too small split), the model against the images, the calibration. A bad input leaves
//      nothing behind.
//   1. The run directory is created and locked (search/run_directory.h: a second process is
//      refused with the holder's PID) and gets config.yaml (the config's text; --resume reads it
//      back) and archive.jsonl (search/archive.h), whose first line records what the scores
//      depend on, appended and fsync'd batch by batch.
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
// max_seconds, whose stopping point depends on the clock. A resume whose model, data files, image
// counts, quantizers, path or program differ from the archive's header is refused naming the key.
//
// SIGINT and SIGTERM stop the run at the next safe point (after the batch in flight is written)
// with mps::Interrupted, which says how to resume (search/interrupt.h).
#include "search/candidate_scorer.h"
#include "search/run_config.h"
#include "search/run_result.h"

#include "evaluator/engine/evaluator.h"

#include <functional>
#include <iosfwd>
#include <memory>
#include <string>

namespace mps {

struct RunOptions {
    bool resume = false;  // continue the run in config.output_dir from its archive
    bool quiet = false;   // no progress output
    std::ostream* log = nullptr; // progress and messages (nullptr: std::cerr)
    // Benchmarks only: adjusts the evaluator's options after the config has set them (e.g. the
    // incremental cache's threshold, which is not a config key).
    std::function<void(EvaluatorOptions&)> tune_evaluator;
    // Who scores the batches and the baselines, given the run's evaluator once it is built and
    // before the run directory exists (search/mpi_scorer.h; unset: the evaluator alone). The
    // FP32 reference and the chosen policy's test score, one candidate each, stay local.
    std::function<std::unique_ptr<CandidateScorer>(Evaluator&)> make_scorer;
};

// Runs the search; returns what the output files describe. Throws mps::Error for an output
// directory that already holds a run (without resume), an archive that does not match the run
// (with resume), mps::Busy for a directory another process holds, mps::Interrupted on a signal.
RunResult run_search(const RunConfig& config, const RunOptions& options);

// The evaluator run_search builds for `config`, after the same checks of the data and the
// model, without touching the run directory: what a process that scores for another loads.
// `warn`: print the data warnings on stderr (the process that runs the search does).
std::unique_ptr<Evaluator> make_run_evaluator(const RunConfig& config, const RunOptions& options,
                                              bool warn);

// "mpsearch 0.1, oneDNN 3.0.0, oneTBB 2021.8.0" (what the report records).
std::string version_text();

} // namespace mps
