#include "policies/autoq/ddpg.h"

#include "evaluator/base/error.h"
#include "evaluator/train/optimizer.h"
#include "evaluator/train/train_network.h"

#include <omp.h>
#if defined(__SSE2__)
#include <immintrin.h>
#endif

#include <algorithm>
#include <cmath>
#include <string>

namespace mps::autoq {

// --- ReplayBuffer ----------------------------------------------------------------------------

void ReplayBuffer::add(Transition t) {
    if (capacity_ == 0) return;
    if (items_.size() < capacity_) {
        items_.push_back(std::move(t));
        return;
    }
    items_[next_] = std::move(t);
    next_ = (next_ + 1) % capacity_;
}

// --- Networks --------------------------------------------------------------------------------

namespace {

// Every use of the networks (creation included) runs in this scope:
//   - one OpenMP thread: the networks are small (a minibatch of 64 through 300-wide layers), so a
//     team's barriers cost more than the work, and the results do not depend on the machine's
//     thread count;
//   - subnormal floats flushed to zero (x86 FTZ and DAZ): Adam's moments of dead ReLU units
//     decay geometrically into the subnormal range, where every operation on them is ~100 times
//     slower; flushing them changes values below 1.2e-38 only.
class AgentScope {
public:
    AgentScope() : threads_(omp_get_max_threads()) {
        omp_set_num_threads(1);
#if defined(__SSE2__)
        csr_ = _mm_getcsr();
        _mm_setcsr(csr_ | 0x8040u); // FTZ (bit 15) and DAZ (bit 6)
#endif
    }
    ~AgentScope() {
#if defined(__SSE2__)
        _mm_setcsr(csr_);
#endif
        omp_set_num_threads(threads_);
    }
    AgentScope(const AgentScope&) = delete;
    AgentScope& operator=(const AgentScope&) = delete;

private:
    int threads_;
    unsigned csr_ = 0;
};

Node fully_connected(const std::string& name, const std::string& in, const std::string& out,
                     int64_t fan_in, int64_t fan_out, double bound, Draws& draws) {
    Node n;
    n.name = name;
    n.op = Op::fully_connected;
    n.inputs = {in};
    n.output = out;
    n.weight = Tensor({fan_out, fan_in});
    n.bias = Tensor({fan_out});
    for (float& w : n.weight.data) w = static_cast<float>((2.0 * draws.unit() - 1.0) * bound);
    for (float& b : n.bias.data) b = static_cast<float>((2.0 * draws.unit() - 1.0) * bound);
    return n;
}

Node relu(const std::string& name, const std::string& in) {
    Node n;
    n.name = name;
    n.op = Op::relu;
    n.inputs = {in};
    n.output = name + "_out";
    return n;
}

// in -> hidden -> relu -> hidden -> relu -> out. Hidden layers start uniform in
// +-1/sqrt(fan_in) (PyTorch's default, HAQ's fanin_init), the output layer in +-3e-3 (DDPG's
// final layer, so that the first actions sit near sigmoid(0) = 0.5 and the first Q near 0).
Graph mlp(int64_t in, int64_t hidden, int64_t out, Draws& draws) {
    Graph g;
    g.input = "x";
    g.input_shape = {in};
    g.output = "y";
    const auto fan_in_bound = [](int64_t n) { return 1.0 / std::sqrt(static_cast<double>(n)); };
    g.nodes.push_back(fully_connected("fc1", "x", "h1", in, hidden, fan_in_bound(in), draws));
    g.nodes.push_back(relu("relu1", "h1"));
    g.nodes.push_back(
        fully_connected("fc2", "relu1_out", "h2", hidden, hidden, fan_in_bound(hidden), draws));
    g.nodes.push_back(relu("relu2", "h2"));
    g.nodes.push_back(fully_connected("fc3", "relu2_out", "y", hidden, out, 3e-3, draws));
    infer_shapes(g);
    return g;
}

float sigmoid(float z) { return 1.0f / (1.0f + std::exp(-z)); }

// target = tau * source + (1 - tau) * target, parameter by parameter (same layouts).
void soft_update(const TrainNetwork& source, TrainNetwork& target, double tau) {
    const float t = static_cast<float>(tau), keep = static_cast<float>(1.0 - tau);
    const auto& from = source.parameters();
    auto& to = target.parameters();
    for (size_t i = 0; i < from.size(); ++i) {
        const float* w = from[i].data();
        float* v = to[i].data();
        const size_t n = from[i].size();
        for (size_t j = 0; j < n; ++j) v[j] = t * w[j] + keep * v[j];
    }
}

// Soft updates copy parameters element by element: the target must be laid out like the source.
void check_same_layout(const TrainNetwork& a, const TrainNetwork& b) {
    const auto& x = a.parameters();
    const auto& y = b.parameters();
    bool same = x.size() == y.size();
    for (size_t i = 0; same && i < x.size(); ++i)
        same = x[i].value.get_desc() == y[i].value.get_desc();
    if (!same)
        throw Failure("ddpg: internal error: oneDNN laid out a target network differently from its "
                    "network; soft updates need identical layouts");
}

} // namespace

struct DdpgAgent::Nets {
    Nets(const DdpgConfig& c, Draws& draws)
        : actor_graph(mlp(c.state_dim, c.hidden, c.action_dim, draws)),
          critic_graph(mlp(c.state_dim + c.action_dim, c.hidden, 1, draws)),
          actor(actor_graph, c.batch, NetworkMode::training),
          actor_target(actor_graph, c.batch, NetworkMode::training),
          actor_one(actor_graph, 1, NetworkMode::inference),
          critic(critic_graph, c.batch, NetworkMode::training, true),
          critic_target(critic_graph, c.batch, NetworkMode::training, true),
          actor_optimizer({"adam", 0.0, false, 0.0}, actor.parameters()),
          critic_optimizer({"adam", 0.0, false, 0.0}, critic.parameters()) {
        check_same_layout(actor, actor_target);
        check_same_layout(critic, critic_target);
    }

    Graph actor_graph, critic_graph; // parameters as initialized; the acting copy syncs through it
    TrainNetwork actor, actor_target, actor_one;
    TrainNetwork critic, critic_target;
    Optimizer actor_optimizer, critic_optimizer;
};

DdpgAgent::DdpgAgent(const DdpgConfig& config)
    : config_(config), replay_(config.replay_size), draws_(config.seed) {
    if (config.state_dim < 1 || config.action_dim < 1 || config.hidden < 1 || config.batch < 1)
        throw Error("ddpg: state, action, hidden and batch sizes must be positive");
    AgentScope scope;
    nets_ = std::make_unique<Nets>(config_, draws_);
}

DdpgAgent::~DdpgAgent() {
    AgentScope scope;
    nets_.reset();
}

void DdpgAgent::sync_acting_actor() {
    if (!acting_actor_stale_) return;
    nets_->actor.store(nets_->actor_graph);
    nets_->actor_one.load(nets_->actor_graph);
    acting_actor_stale_ = false;
}

std::vector<float> DdpgAgent::act(std::span<const float> state) {
    if (static_cast<int64_t>(state.size()) != config_.state_dim)
        throw Error("ddpg: act() got " + std::to_string(state.size()) + " state values, expected " +
                    std::to_string(config_.state_dim));
    AgentScope scope;
    sync_acting_actor();
    nets_->actor_one.forward(state.data());
    const float* z = nets_->actor_one.output();
    std::vector<float> action(static_cast<size_t>(config_.action_dim));
    for (size_t i = 0; i < action.size(); ++i) action[i] = sigmoid(z[i]);
    return action;
}

std::vector<float> DdpgAgent::act_many(std::span<const float> states) {
    const size_t dim = static_cast<size_t>(config_.state_dim);
    const size_t adim = static_cast<size_t>(config_.action_dim);
    const size_t batch = static_cast<size_t>(config_.batch);
    const size_t rows = states.size() / dim;
    std::vector<float> actions(rows * adim);
    std::vector<float> chunk(batch * dim, 0.0f);
    AgentScope scope;
    for (size_t first = 0; first < rows; first += batch) {
        const size_t n = std::min(batch, rows - first);
        std::fill(chunk.begin(), chunk.end(), 0.0f);
        std::copy_n(states.begin() + static_cast<std::ptrdiff_t>(first * dim), n * dim,
                    chunk.begin());
        nets_->actor.forward(chunk.data());
        const float* z = nets_->actor.output();
        for (size_t i = 0; i < n * adim; ++i) actions[first * adim + i] = sigmoid(z[i]);
    }
    return actions;
}

bool DdpgAgent::update() {
    const size_t batch = static_cast<size_t>(config_.batch);
    if (replay_.size() < batch) return false;
    const size_t sdim = static_cast<size_t>(config_.state_dim);
    const size_t adim = static_cast<size_t>(config_.action_dim);
    const size_t qdim = sdim + adim;
    Nets& n = *nets_;
    AgentScope scope;

    // Minibatch: [s, a] rows for the critic, s' rows for the targets.
    std::vector<float> state_action(batch * qdim), next_states(batch * sdim, 0.0f);
    std::vector<double> rewards(batch);
    std::vector<bool> terminal(batch);
    double mean_reward = 0.0;
    for (size_t i = 0; i < batch; ++i) {
        const Transition& t = replay_[static_cast<size_t>(draws_.below(replay_.size()))];
        std::copy(t.state.begin(), t.state.end(), state_action.begin() + i * qdim);
        std::copy(t.action.begin(), t.action.end(), state_action.begin() + i * qdim + sdim);
        if (!t.terminal) std::copy(t.next_state.begin(), t.next_state.end(), next_states.begin() + i * sdim);
        rewards[i] = t.reward;
        terminal[i] = t.terminal;
        mean_reward += t.reward / static_cast<double>(batch);
    }
    baseline_ = updates_ == 0 ? mean_reward
                              : baseline_ + config_.baseline_alpha * (mean_reward - baseline_);

    // Targets y = (r - baseline) + discount * Q'(s', mu'(s')) for non-terminal transitions.
    n.actor_target.forward(next_states.data());
    std::vector<float> next_input(batch * qdim);
    for (size_t i = 0; i < batch; ++i) {
        std::copy_n(next_states.begin() + i * sdim, sdim, next_input.begin() + i * qdim);
        for (size_t k = 0; k < adim; ++k)
            next_input[i * qdim + sdim + k] = sigmoid(n.actor_target.output()[i * adim + k]);
    }
    n.critic_target.forward(next_input.data());
    std::vector<float> diff(batch);
    n.critic.forward(state_action.data());
    for (size_t i = 0; i < batch; ++i) {
        const double next_q = terminal[i] ? 0.0 : n.critic_target.output()[i];
        const double y = rewards[i] - baseline_ + config_.discount * next_q;
        diff[i] = static_cast<float>(2.0 * (n.critic.output()[i] - y) / static_cast<double>(batch));
    }
    n.critic.backward(diff.data());
    n.critic_optimizer.step(config_.critic_lr);

    // Actor: ascend Q(s, sigmoid(z)); dL/dz = -dQ/da * sigmoid'(z) / batch.
    std::vector<float> states(batch * sdim);
    for (size_t i = 0; i < batch; ++i)
        std::copy_n(state_action.begin() + i * qdim, sdim, states.begin() + i * sdim);
    n.actor.forward(states.data());
    std::vector<float> actions(batch * adim);
    for (size_t i = 0; i < batch * adim; ++i) actions[i] = sigmoid(n.actor.output()[i]);
    for (size_t i = 0; i < batch; ++i)
        std::copy_n(actions.begin() + i * adim, adim, state_action.begin() + i * qdim + sdim);
    n.critic.forward(state_action.data());
    std::fill(diff.begin(), diff.end(), -1.0f / static_cast<float>(batch));
    n.critic.backward(diff.data());
    const float* dq = n.critic.input_gradient();
    std::vector<float> actor_diff(batch * adim);
    for (size_t i = 0; i < batch; ++i)
        for (size_t k = 0; k < adim; ++k) {
            const float a = actions[i * adim + k];
            actor_diff[i * adim + k] = dq[i * qdim + sdim + k] * a * (1.0f - a);
        }
    n.actor.backward(actor_diff.data());
    n.actor_optimizer.step(config_.actor_lr);

    soft_update(n.actor, n.actor_target, config_.tau);
    soft_update(n.critic, n.critic_target, config_.tau);
    acting_actor_stale_ = true;
    ++updates_;
    return true;
}

} // namespace mps::autoq
