#pragma once
// Outputs of a finished run, written into its run directory, each atomically (temporary file,
// then rename):
//   pareto.csv    both Pareto fronts of the search (validation accuracy vs relative BitOPs, and vs
//                 weight bytes): one row per front point
//   pareto.svg    all evaluations, the BitOPs front, the uniform baselines and the chosen point,
//                 rendered by gnuplot (skipped with a warning when gnuplot is missing)
//   summary.json  the machine-readable result: chosen policy's figures, baselines, fronts, counts
//   report.md     config echo, versions, seed, evaluations, seconds, stop reason, the chosen
//                 policy's per-layer bits, the Pareto table, uniform baselines (validation, test)
// The formats are documented in docs/outputs.md. Files are written with write_file_atomically
// (evaluator/base/atomic_file.h).
#include "search/run_result.h"

#include <span>
#include <string>
#include <vector>

namespace mps {

// A point of a Pareto front: the record index, its cost and validation accuracy.
struct FrontPoint {
    size_t record = 0;
    double cost = 0.0;
    double accuracy = 0.0;
};

// The non-dominated records (higher accuracy and lower cost are better), sorted by cost
// ascending. `cost` maps a record to the cost axis. A record is dominated when another has
// cost <= and accuracy >= with one strict; of exact duplicates the earliest record stays.
std::vector<FrontPoint> pareto_front(std::span<const ArchiveRecord> records,
                                     double (*cost)(const ArchiveRecord&));
double relative_bitops_of(const ArchiveRecord& record);
double weight_bytes_of(const ArchiveRecord& record);

// Writes pareto.csv, pareto.svg, summary.json and report.md into `run_dir` (which exists).
// Returns warnings (e.g. "gnuplot not found; pareto.svg not written") for the caller to print.
std::vector<std::string> write_run_outputs(const std::string& run_dir, const RunResult& result);

} // namespace mps
