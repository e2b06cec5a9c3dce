#pragma once
// What a search run produced, as the run loop hands it to the output writers (report.h) and as
// archive.jsonl stores it, one ArchiveRecord per line.
#include "evaluator/engine/evaluator.h"
#include "evaluator/ir/bit_policy.h"
#include "policies/search_space.h"
#include "search/run_config.h"

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace mps {

// One scored candidate of the search (validation split).
struct ArchiveRecord {
    int64_t id = 0;               // 0, 1, 2, ... in evaluation order
    int64_t batch = 0;            // the proposal round it belongs to
    std::string stage;            // Proposal::stage
    Evaluation evaluation;        // policy and validation score (costs included)
    double elapsed_seconds = 0.0; // run time when its batch finished (including resumed time)
    std::optional<double> reward; // SearchPolicy::rewards(), for policies that give one
    std::optional<double> own_accuracy; // SearchPolicy::own_accuracy(), for policies that give one
};

// A uniform (weight, activation) baseline scored on both splits.
struct BaselineResult {
    UniformBits bits;
    BitPolicy policy;             // the uniform policy (pinned layers at their pins)
    Score validation;
    Score test;
};

struct RunResult {
    const RunConfig* config = nullptr;
    Score fp32_validation, fp32_test;       // W32A32
    std::vector<BaselineResult> baselines;  // config->baselines, in order
    std::vector<ArchiveRecord> records;     // every search evaluation, in order
    std::optional<size_t> chosen;           // index into records; nullopt: nothing met the constraints
    std::optional<Score> chosen_test;       // the chosen policy on the test split
    std::string chosen_policy_file;         // file name inside the run directory ("policy.yaml")
    std::string stop_reason;                // "policy finished", "max_evaluations reached", ...
    double search_seconds = 0.0;            // wall time of the whole run, resumed parts included
    int64_t resumed_evaluations = 0;        // records taken from an earlier run's archive
    std::string versions;                   // "mpsearch <git>, oneDNN x.y, oneTBB x.y"
    std::string onednn_isa;                 // ISA oneDNN ran with: "avx512_core_amx", "avx2", ...
};

} // namespace mps
