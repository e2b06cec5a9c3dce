#pragma once
// DDPG (Lillicrap et al. 2016) as HAQ and AutoQ use it: a deterministic actor a = sigmoid(mu(s))
// in [0, 1]^n, a critic Q(s, a), target copies of both that follow by soft updates
// (w' = tau w + (1 - tau) w'), a replay buffer and a moving-average reward baseline.
//
// Both networks are Graphs of fully_connected + relu nodes (in -> hidden -> hidden -> out) run
// by the evaluator's training engine (TrainNetwork) and updated by its Adam (evaluator/
// optimizer.h): the networks output pre-activations; the actor's sigmoid is applied on the host
// and its derivative multiplies the gradient before the actor's backward. dQ/da is the critic's
// input gradient (the action columns of its input [s, a]).
//
// One update (HAQ's update_policy):
//   - a minibatch of `batch` transitions drawn uniformly (with replacement) from the buffer;
//   - baseline += alpha * (mean minibatch reward - baseline) (the first minibatch sets it);
//     rewards minus the baseline are what the critic learns;
//   - critic: y = (r - baseline) + discount * (1 - terminal) * Q'(s', mu'(s')), minimize the
//     mean of (Q(s, a) - y)^2;
//   - actor: maximize the mean of Q(s, mu(s)) through the updated critic;
//   - soft updates of both targets.
//
// Deterministic: parameters are initialized and minibatches drawn from a seeded std::mt19937_64
// with our own conversions (no std distributions), and the networks always run on one OpenMP
// thread with subnormals flushed to zero (ddpg.cpp, AgentScope): the same seed and transitions
// give bit-identical networks whatever the machine's thread count.
#include "evaluator/base/seeded_random.h"
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <memory>
#include <random>
#include <span>
#include <vector>

namespace mps::autoq {

// Random draws identical with every standard library.
using Draws = RandomDraws;

struct Transition {
    std::vector<float> state;
    std::vector<float> action;     // in [0, 1]
    double reward = 0.0;
    std::vector<float> next_state; // ignored when terminal
    bool terminal = false;
};

// A ring buffer of the last `capacity` transitions.
class ReplayBuffer {
public:
    explicit ReplayBuffer(size_t capacity) : capacity_(capacity) {}
    void add(Transition t);
    size_t size() const { return items_.size(); }
    const Transition& operator[](size_t i) const { return items_[i]; }

private:
    size_t capacity_;
    size_t next_ = 0;
    std::vector<Transition> items_;
};

struct DdpgConfig {
    int64_t state_dim = 1;
    int64_t action_dim = 1;
    int64_t hidden = 300;
    double actor_lr = 1e-4;
    double critic_lr = 1e-3;
    double tau = 0.01;
    double discount = 1.0;
    int64_t batch = 64;
    size_t replay_size = 2000;     // transitions
    double baseline_alpha = 0.5;   // HAQ's moving_alpha
    uint64_t seed = 1;
};

class DdpgAgent {
public:
    explicit DdpgAgent(const DdpgConfig& config); // mps::Error on non-positive sizes
    ~DdpgAgent();
    DdpgAgent(const DdpgAgent&) = delete;
    DdpgAgent& operator=(const DdpgAgent&) = delete;

    const DdpgConfig& config() const { return config_; }
    // The actor's action for one state (state_dim floats), each component in [0, 1].
    std::vector<float> act(std::span<const float> state);
    // The actor's actions for `states.size() / state_dim` states, row after row.
    std::vector<float> act_many(std::span<const float> states);

    void remember(Transition t) { replay_.add(std::move(t)); }
    const ReplayBuffer& replay() const { return replay_; }
    // One minibatch update; false (and nothing changes) while the buffer holds fewer
    // transitions than a minibatch.
    bool update();
    double baseline() const { return baseline_; }
    int64_t updates() const { return updates_; }

private:
    struct Nets;
    void sync_acting_actor();

    DdpgConfig config_;
    std::unique_ptr<Nets> nets_;
    ReplayBuffer replay_;
    Draws draws_;
    double baseline_ = 0.0;
    int64_t updates_ = 0;
    bool acting_actor_stale_ = false; // the batch-1 actor lags the trained one
};

} // namespace mps::autoq
