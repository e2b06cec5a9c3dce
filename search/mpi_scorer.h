#pragma once
// `mpirun -np N mpsearch search ...`: one search whose candidates are scored by N processes
// (docs/distributed.md). Every rank parses the same command line and config and builds its own
// Evaluator. Rank 0 is the search: policy, archive, progress, report, exactly as one process.
// Ranks 1..N-1 are workers: they write nothing and score the candidates rank 0 sends them.
//
// Rank 0 spreads each batch (CandidateScorer::score) over every rank, itself included, one
// candidate at a time to whichever rank is free first, and puts the scores back in candidate
// order, so the archive is the one-process run's whatever the placement (evaluation is
// deterministic per candidate). Idle ranks wait by polling with short sleeps, not in a blocking
// receive, because Open MPI's blocking calls spin a core, and the cores are shared with rank 0.
//
// Life cycle: every worker reports once whether it loaded (or why not); rank 0 waits for all of
// them before creating the run directory, and a worker that failed makes it throw mps::Error
// naming the rank (exit 2). Whenever rank 0 leaves `mpsearch search` (success, error, signal) its
// MpiSession tells every worker to stop; workers never end the job themselves.
//
// All MPI calls are in mpi_scorer.cpp. Built without MPI (MPSEARCH_WITH_MPI undefined) the session
// is always one process, and a launch by mpirun with more than one process is refused.
#include "search/candidate_scorer.h"
#include "search/run_config.h"

#include <functional>
#include <memory>

namespace mps {

class MpiSession {
public:
    // Initializes MPI only when the environment says mpirun started this process; otherwise (and
    // without MPI) a session of one rank.
    MpiSession(int* argc, char*** argv);
    ~MpiSession(); // rank 0: stops the workers; then MPI_Finalize
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    int rank() const { return rank_; }
    int size() const { return size_; }
    bool distributed() const { return size_ > 1; }

private:
    int rank_ = 0;
    int size_ = 1;
    bool initialized_ = false;
};

// Rank 0 of a distributed session: waits until every worker has loaded (mps::Error naming the
// first that failed, with its message), then returns the scorer that spreads batches over all
// ranks, `evaluator` (rank 0's own) included.
std::unique_ptr<CandidateScorer> make_mpi_scorer(MpiSession& session, Evaluator& evaluator);

// A worker (rank > 0): `load` builds the evaluator (it throws what loading throws); the failure,
// or readiness, is reported to rank 0, then candidates are scored until rank 0 says stop.
// Returns the process's exit code (0: a worker's failures are rank 0's to report).
int serve_candidates(MpiSession& session, const std::function<std::unique_ptr<Evaluator>()>& load);

} // namespace mps
