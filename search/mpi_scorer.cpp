#include "search/mpi_scorer.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#ifdef MPSEARCH_WITH_MPI
// The C API only: mpi.h included from C++ would also pull in the deprecated C++ bindings, which
// need a library (libmpi_cxx) that is not linked.
#define OMPI_SKIP_MPICXX 1
#define MPICH_SKIP_MPICXX 1
#include <mpi.h>

#include <atomic>
#include <chrono>
#include <exception>
#include <thread>
#endif

namespace mps {

namespace {

// The size of the job mpirun (Open MPI, or a PMI launcher such as MPICH's) says this process
// belongs to; 1 when it was not started by one.
int launcher_size() {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_SIZE"})
        if (const char* value = std::getenv(name)) return std::max(1, std::atoi(value));
    return 1;
}

} // namespace

#ifndef MPSEARCH_WITH_MPI

MpiSession::MpiSession(int*, char***) {
    if (launcher_size() > 1)
        throw Error("this mpsearch was built without MPI, so it cannot share a search between "
                    "processes; install libopenmpi-dev (scripts/setup.sh) and rebuild, or run "
                    "it without mpirun");
}
MpiSession::~MpiSession() = default;

std::unique_ptr<CandidateScorer> make_mpi_scorer(MpiSession&, Evaluator& evaluator) {
    return std::make_unique<LocalScorer>(evaluator);
}

int serve_candidates(MpiSession&, const std::function<std::unique_ptr<Evaluator>()>&) {
    throw Failure("serve_candidates: no workers without MPI (a bug: the session has one rank)");
}

#else

namespace {

enum Tag : int { tag_status = 1, tag_candidate, tag_score, tag_error, tag_stop };

// Longer texts would pass Open MPI's eager limit, and a send rank 0 never receives would then
// block the worker (rank 0 may already have stopped listening).
constexpr size_t max_text = 2000;

void send(const Bytes& bytes, int to, int tag) {
    MPI_Send(bytes.data(), static_cast<int>(bytes.size()), MPI_BYTE, to, tag, MPI_COMM_WORLD);
}

void send_text(const std::string& text, int to, int tag) {
    const std::string cut = text.substr(0, max_text);
    send(Bytes(cut.begin(), cut.end()), to, tag);
}

struct Message {
    int source = 0;
    int tag = 0;
    Bytes bytes;
};

// The next message from `source` (MPI_ANY_SOURCE: any rank), waited for by polling: a blocking
// MPI_Recv in Open MPI spins, taking a core from the rank that computes.
Message receive(int source) {
    MPI_Status status;
    for (int flag = 0;;) {
        MPI_Iprobe(source, MPI_ANY_TAG, MPI_COMM_WORLD, &flag, &status);
        if (flag) break;
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    int count = 0;
    MPI_Get_count(&status, MPI_BYTE, &count);
    Message message{status.MPI_SOURCE, status.MPI_TAG, Bytes(static_cast<size_t>(count))};
    MPI_Recv(message.bytes.data(), count, MPI_BYTE, status.MPI_SOURCE, status.MPI_TAG,
             MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    return message;
}

std::string text_of(const Message& message) {
    return std::string(message.bytes.begin(), message.bytes.end());
}

// Rank 0's own share of a batch, on a thread of its own so that the main thread keeps the
// workers busy meanwhile (only the main thread calls MPI: MPI_THREAD_FUNNELED).
class LocalShare {
public:
    LocalShare(Evaluator& evaluator, std::span<const BitPolicy> candidates, Split split,
               std::vector<Score>& scores, std::atomic<size_t>& next)
        : thread_([&evaluator, candidates, split, &scores, &next, this] {
              try {
                  for (size_t i; (i = next++) < candidates.size();)
                      scores[i] = evaluator.evaluate(candidates[i], split);
              } catch (...) {
                  error_ = std::current_exception();
                  next = candidates.size(); // hand out nothing more
              }
          }) {}
    void join() {
        if (thread_.joinable()) thread_.join();
        if (error_) std::rethrow_exception(error_);
    }
    ~LocalShare() {
        if (thread_.joinable()) thread_.join();
    }

private:
    std::exception_ptr error_;
    std::thread thread_; // last: started once error_ exists
};

class MpiScorer final : public CandidateScorer {
public:
    MpiScorer(MpiSession& session, Evaluator& evaluator) : session_(session), evaluator_(evaluator) {}

    std::vector<Score> score(std::span<const BitPolicy> candidates, Split split) override {
        validate(candidates);
        std::vector<Score> scores(candidates.size());
        std::atomic<size_t> next{0};
        LocalShare local(evaluator_, candidates, split, scores, next);
        int busy = 0;
        for (int rank = 1; rank < session_.size(); ++rank) busy += hand_out(rank, candidates, split, next);
        std::string failed; // the first worker's error; the others' results are still collected
        while (busy > 0) {
            const Message message = receive(MPI_ANY_SOURCE);
            --busy;
            if (message.tag == tag_score) {
                ScoreMessage result = decode_score(message.bytes, evaluator_.graph(), candidates);
                scores[static_cast<size_t>(result.index)] = std::move(result.score);
            } else if (message.tag == tag_error && failed.empty()) {
                failed = "rank " + std::to_string(message.source) + ": " + text_of(message);
                next = candidates.size();
            }
            if (failed.empty()) busy += hand_out(message.source, candidates, split, next);
        }
        local.join();
        if (!failed.empty()) throw Failure(failed);
        return scores;
    }

private:
    // The policies are checked here, where the search can name the candidate, not on a worker.
    void validate(std::span<const BitPolicy> candidates) const {
        for (size_t i = 0; i < candidates.size(); ++i) {
            try {
                candidates[i].validate(evaluator_.graph());
            } catch (const Error& e) {
                throw Error("candidate " + std::to_string(i) + " (" + candidates[i].to_string() +
                                "): " + e.what(),
                            e.kind());
            }
        }
    }

    // Sends `rank` the next candidate, if any is left; 1 when one was sent.
    static int hand_out(int rank, std::span<const BitPolicy> candidates, Split split,
                        std::atomic<size_t>& next) {
        const size_t i = next++;
        if (i >= candidates.size()) return 0;
        send(encode_candidate({static_cast<int64_t>(i), split, candidates[i]}), rank, tag_candidate);
        return 1;
    }

    MpiSession& session_;
    Evaluator& evaluator_;
};

// A worker's loop: one candidate at a time until rank 0 says stop.
void serve(Evaluator& evaluator) {
    for (;;) {
        const Message message = receive(0);
        if (message.tag == tag_stop) return;
        try {
            const CandidateMessage candidate = decode_candidate(message.bytes, evaluator.graph());
            const Score score = evaluator.evaluate(candidate.policy, candidate.split);
            send(encode_score({candidate.index, score}), 0, tag_score);
        } catch (const std::exception& e) {
            send_text(e.what(), 0, tag_error);
        }
    }
}

void wait_for_stop() {
    while (receive(0).tag != tag_stop) {
    }
}

} // namespace

MpiSession::MpiSession(int* argc, char*** argv) {
    if (launcher_size() <= 1) return;
    int provided = 0;
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    initialized_ = true;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &size_);
    if (provided < MPI_THREAD_FUNNELED)
        throw Failure("the MPI library does not allow threads (MPI_THREAD_FUNNELED), which "
                      "rank 0 needs to score its share while it serves the workers");
}

MpiSession::~MpiSession() {
    if (!initialized_) return;
    if (rank_ == 0)
        for (int rank = 1; rank < size_; ++rank) send({}, rank, tag_stop);
    MPI_Finalize();
}

std::unique_ptr<CandidateScorer> make_mpi_scorer(MpiSession& session, Evaluator& evaluator) {
    if (!session.distributed()) return std::make_unique<LocalScorer>(evaluator);
    std::vector<std::string> failures(static_cast<size_t>(session.size()));
    int failed = 0;
    for (int reported = 1; reported < session.size(); ++reported) {
        const Message message = receive(MPI_ANY_SOURCE);
        if (message.tag != tag_status || message.bytes.empty()) continue;
        ++failed;
        failures[static_cast<size_t>(message.source)] = text_of(message);
    }
    if (failed == 0) return std::make_unique<MpiScorer>(session, evaluator);
    const auto first = std::find_if(failures.begin(), failures.end(),
                                    [](const std::string& text) { return !text.empty(); });
    std::string text = "rank " + std::to_string(first - failures.begin()) +
                       " could not load the run: " + *first;
    if (failed > 1) text += " (and " + std::to_string(failed - 1) + " other rank(s) failed too)";
    throw Error(text);
}

int serve_candidates(MpiSession&, const std::function<std::unique_ptr<Evaluator>()>& load) {
    std::unique_ptr<Evaluator> evaluator;
    try {
        evaluator = load();
    } catch (const std::exception& e) {
        send_text(e.what()[0] ? e.what() : "an error without a message", 0, tag_status);
        wait_for_stop();
        return 0;
    }
    send({}, 0, tag_status); // empty: ready
    serve(*evaluator);
    return 0;
}

#endif

} // namespace mps
