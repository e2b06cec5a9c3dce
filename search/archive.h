#pragma once
// The archive of a search run: archive.jsonl in the run directory, one JSON object per line,
// appended batch by batch (each batch written with one write, then fsync'd), so that a run killed
// at any moment loses at most the batch in flight. docs/outputs.md documents the line format.
//
// Line kinds ("kind"):
//   run        the first line: what the scores depend on besides the candidates (ArchiveHeader)
//   reference  the FP32 (W32A32) network on a split
//   search     one evaluation of the search: id, batch, batch_size, stage, elapsed, policy, score
//   baseline   a uniform baseline on a split ("bits": "W4A4")
//   chosen     the chosen policy on the test split
// Scores store accuracy, loss, KL, SQNR, counts and seconds; costs are stored for readers but
// recomputed from the policy when loading (they are a pure function of the policy).
//
// Every line ends with its checksum, `"check":"<16 hex digits>"}`: the first 16 hex digits of the
// SHA-256 of the line with that member left out. A line whose checksum does not match (a record
// edited by hand, a flipped bit) is an error naming it, so a resume never builds on scores that
// were not measured.
#include "evaluator/engine/evaluator.h"
#include "evaluator/ir/graph.h"
#include "search/run_result.h"

#include <cstdio>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace mps {

// What the scores of a run depend on besides the candidates, which the resume's replay checks
// itself: the model's and data files' SHA-256, the image counts, quantizers, calibration, path
// and program version, by key (docs/outputs.md lists them). Values are text, compared exactly.
using ArchiveHeader = std::map<std::string, std::string>;

// Throws mps::Error when the archive at `path` was written with `archived` and the run now gives
// `now`, naming the first key that differs (or is missing) and both values.
void check_header(const std::string& path, const ArchiveHeader& archived, const ArchiveHeader& now);

// What an archive file holds, complete batches only.
struct ArchiveContents {
    std::optional<ArchiveHeader> header;                  // absent in an archive without one
    std::map<std::string, Score> references;             // by split name
    std::vector<ArchiveRecord> records;                   // search evaluations, in order
    std::map<std::string, Score> baselines;               // by "<bits>/<split>", e.g. "W4A4/test"
    std::optional<Score> chosen_test;
    std::optional<int64_t> chosen_id;                     // the record chosen_test belongs to
    std::vector<std::string> lines;                       // the raw lines kept, in file order
    int64_t dropped_lines = 0;                            // a torn tail (a batch cut by a kill)
};

// Reads `path` and validates every line against `graph`. A torn tail (a last line cut short, or a
// search batch with fewer lines than its batch_size at the end of the file) is dropped and
// counted; any other malformed line is an mps::Error naming the file and the line number.
ArchiveContents read_archive(const std::string& path, const Graph& graph);

// Appends lines to an archive. Each append() is one write followed by fsync.
class ArchiveWriter {
public:
    // Creates `path` holding exactly `kept_lines` (atomically: temporary file, then rename), then
    // opens it for appending.
    ArchiveWriter(const std::string& path, const std::vector<std::string>& kept_lines);
    ~ArchiveWriter();
    ArchiveWriter(const ArchiveWriter&) = delete;
    ArchiveWriter& operator=(const ArchiveWriter&) = delete;

    void header(const ArchiveHeader& header); // the first line of a new archive
    void reference(const Score& score); // the FP32 network on score.split
    void baseline(const std::string& bits, const BitPolicy& policy, const Score& score);
    void chosen(int64_t record_id, const Score& test_score);
    void batch(const std::vector<ArchiveRecord>& records); // one search batch, complete

private:
    void append(const std::string& text);
    std::string path_;
    std::FILE* file_ = nullptr;
};

} // namespace mps
