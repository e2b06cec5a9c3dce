#pragma once
// CandidateScorer: how the run loop (search/run.cpp) gets a batch of candidates scored, so that
// it does not care whether one process scores them (LocalScorer, the evaluator itself) or many
// (search/mpi_scorer.h). Contract of score(): scores[i] belongs to candidates[i] and is exactly
// what Evaluator::evaluate(candidates, split)[i] would be — bit for bit but for `seconds`, the
// only field that depends on where and when a candidate ran.
//
// The wire format below is what a candidate and a score look like between processes. It lives
// here, not in the MPI file pair, because it needs no MPI and is tested without it.
//
//   candidate  int64 index, uint8 split, then per quantizable layer in graph order one uint8 of
//              activation bits followed by one uint8 of weight bits per kernel:
//              9 + layers + kernels bytes (layer names are the graph's: both ends load it)
//   score      int64 index, 5 doubles (accuracy, loss, kl, sqnr, seconds; their bytes, so they
//              arrive bit-exact), 2 int64 (correct, images), uint8 split, uint8 path: 66 bytes.
//              Costs are not sent: the receiver recomputes them with compute_costs, as the
//              evaluator does, which gives the same values.
// Both ends are the same program on the same kind of machine (mpirun of one binary), so the
// numbers travel in native byte order.
#include "evaluator/engine/evaluator.h"

#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace mps {

class CandidateScorer {
public:
    virtual ~CandidateScorer() = default;
    virtual std::vector<Score> score(std::span<const BitPolicy> candidates, Split split) = 0;
};

// Scores in this process: Evaluator::evaluate.
class LocalScorer final : public CandidateScorer {
public:
    explicit LocalScorer(Evaluator& evaluator) : evaluator_(evaluator) {}
    std::vector<Score> score(std::span<const BitPolicy> candidates, Split split) override {
        return evaluator_.evaluate(candidates, split);
    }

private:
    Evaluator& evaluator_;
};

using Bytes = std::vector<unsigned char>;

struct CandidateMessage {
    int64_t index = 0; // position in the batch, so results can be put back in order
    Split split = Split::validation;
    BitPolicy policy;
};
Bytes encode_candidate(const CandidateMessage& message);
// mps::Failure when `bytes` does not fit `graph` (another model on the sending side).
CandidateMessage decode_candidate(std::span<const unsigned char> bytes, const Graph& graph);

struct ScoreMessage {
    int64_t index = 0;
    Score score; // costs are not carried (see above)
};
Bytes encode_score(const ScoreMessage& message);
// The score with its costs recomputed from `policy` (the candidate it belongs to).
ScoreMessage decode_score(std::span<const unsigned char> bytes, const Graph& graph,
                          std::span<const BitPolicy> candidates);

} // namespace mps
