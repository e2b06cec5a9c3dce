#include "policies/autoq/controllers.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mps::autoq {

namespace {

std::pair<int, int> range_of(std::span<const int> allowed) {
    if (allowed.empty()) throw Failure("autoq: internal error: an empty set of allowed bit-widths");
    const auto [lo, hi] = std::minmax_element(allowed.begin(), allowed.end());
    return {*lo, *hi};
}

double linear_bits(double action, std::span<const int> allowed) {
    const auto [lo, hi] = range_of(allowed);
    const double a = std::clamp(action, 0.0, 1.0);
    return lo - 0.5 + a * (hi - lo + 1.0);
}

} // namespace

int nearest_allowed(double bits, std::span<const int> allowed) {
    range_of(allowed);
    int best = allowed[0];
    for (int b : allowed) {
        const double d = std::abs(bits - b), best_d = std::abs(bits - best);
        if (d < best_d || (d == best_d && b > best)) best = b;
    }
    return best;
}

int action_to_bits(double action, std::span<const int> allowed) {
    return nearest_allowed(linear_bits(action, allowed), allowed);
}

double goal_bits(double action, std::span<const int> allowed) {
    const auto [lo, hi] = range_of(allowed);
    return std::clamp(linear_bits(action, allowed), static_cast<double>(lo),
                      static_cast<double>(hi));
}

double goal_action(double bits, std::span<const int> allowed) {
    const auto [lo, hi] = range_of(allowed);
    const double b = std::clamp(bits, static_cast<double>(lo), static_cast<double>(hi));
    return (b - lo + 0.5) / (hi - lo + 1.0);
}

Mode parse_mode(const std::string& name) {
    if (name == "resource_constrained") return Mode::resource_constrained;
    if (name == "accuracy_guaranteed") return Mode::accuracy_guaranteed;
    throw Error("autoq: unknown mode '" + name +
                "'; use resource_constrained or accuracy_guaranteed");
}

double extrinsic_reward(Mode mode, const RewardWeights& weights, const Score& score,
                        double fp32_accuracy) {
    if (mode == Mode::resource_constrained)
        return (score.accuracy_percent - fp32_accuracy) * 0.1;
    const auto safe_log = [](double x) { return std::log(std::max(x, 1e-6)); };
    return weights.accuracy * safe_log(score.accuracy_percent / 100.0) -
           weights.bitops * safe_log(score.costs.relative_bitops()) -
           weights.memory * safe_log(score.costs.relative_weight_bytes());
}

double intrinsic_reward(double mean_bits, double goal, int max_bits) {
    return -std::abs(mean_bits - goal) / static_cast<double>(max_bits);
}

double explore(double action, const Exploration& exploration, Draws& draws) {
    switch (exploration.kind) {
    case Exploration::Kind::greedy: return action;
    case Exploration::Kind::uniform: return draws.unit();
    case Exploration::Kind::noise:
        return draws.truncated_normal(action, exploration.sigma, 0.0, 1.0);
    }
    return action;
}

double LayerWalk::mean_bits() const {
    double sum = 0.0;
    for (int b : bits) sum += b;
    return bits.empty() ? 0.0 : sum / static_cast<double>(bits.size());
}

// --- LowLevelController ----------------------------------------------------------------------

namespace {

DdpgConfig llc_config(DdpgConfig config, int64_t layer_state_dim) {
    config.state_dim = LowLevelController::state_dim(layer_state_dim);
    config.action_dim = 1;
    return config;
}

} // namespace

LowLevelController::LowLevelController(DdpgConfig config, int64_t layer_state_dim,
                                       std::vector<int> kernel_bits, std::vector<int> weight_bits)
    : kernel_bits_(std::move(kernel_bits)), weight_bits_(std::move(weight_bits)),
      max_bits_(range_of(kernel_bits_).second), agent_(llc_config(config, layer_state_dim)) {
    range_of(weight_bits_);
}

double LowLevelController::goal_action_of(double bits) const {
    return goal_action(bits, kernel_bits_);
}

std::vector<float> LowLevelController::kernel_state(const LayerView& layer, double goal_action,
                                                    size_t k, double running_mean) const {
    const KernelFeatures& f = layer.kernels[k];
    const int goal_weight_bits = nearest_allowed(goal_bits(goal_action, kernel_bits_), weight_bits_);
    const size_t at = static_cast<size_t>(
        std::find(weight_bits_.begin(), weight_bits_.end(), goal_weight_bits) - weight_bits_.begin());
    std::vector<float> s = layer.state;
    s.push_back(static_cast<float>(goal_action));
    s.push_back(static_cast<float>(static_cast<double>(k) / static_cast<double>(layer.kernels.size())));
    s.push_back(f.mean);
    s.push_back(f.std);
    s.push_back(f.max_abs);
    s.push_back(at < f.error.size() ? f.error[at] : 0.0f);
    // On the goal's scale, so that "below the goal" is a plain comparison of two inputs; before
    // the first kernel, the goal itself (nothing to correct yet).
    s.push_back(static_cast<float>(k ? goal_action_of(running_mean) : goal_action));
    return s;
}

LayerWalk LowLevelController::walk(const LayerView& layer, double goal_action,
                                   const Exploration& exploration, Draws& draws) {
    LayerWalk w;
    w.goal_action = goal_action;
    w.goal = goal_bits(goal_action, kernel_bits_);
    double sum = 0.0;
    for (size_t k = 0; k < layer.kernels.size(); ++k) {
        std::vector<float> s =
            kernel_state(layer, goal_action, k, k ? sum / static_cast<double>(k) : 0.0);
        const double greedy =
            exploration.kind == Exploration::Kind::uniform ? 0.0 : agent_.act(s)[0];
        const double action = explore(greedy, exploration, draws);
        const int bits = action_to_bits(action, kernel_bits_);
        sum += bits;
        w.states.push_back(std::move(s));
        w.actions.push_back(static_cast<float>(action));
        w.bits.push_back(bits);
    }
    if (!w.bits.empty() && std::all_of(w.bits.begin(), w.bits.end(), [](int b) { return b == 0; })) {
        size_t keep = 0;
        for (size_t k = 1; k < layer.kernels.size(); ++k)
            if (layer.kernels[k].max_abs > layer.kernels[keep].max_abs) keep = k;
        w.bits[keep] = *std::min_element(weight_bits_.begin(), weight_bits_.end());
    }
    return w;
}

std::vector<std::vector<float>> LowLevelController::states_for(const LayerView& layer,
                                                               double goal_action,
                                                               std::span<const int> bits) const {
    std::vector<std::vector<float>> states;
    double sum = 0.0;
    for (size_t k = 0; k < layer.kernels.size(); ++k) {
        states.push_back(
            kernel_state(layer, goal_action, k, k ? sum / static_cast<double>(k) : 0.0));
        sum += bits[k];
    }
    return states;
}

void LowLevelController::remember(const LayerWalk& walk, double shaping) {
    const double last = intrinsic_reward(walk.mean_bits(), walk.goal, max_bits_);
    for (size_t k = 0; k < walk.states.size(); ++k) {
        const bool terminal = k + 1 == walk.states.size();
        Transition t;
        t.state = walk.states[k];
        t.action = {walk.actions[k]};
        t.reward = (terminal ? last : 0.0) + shaping;
        if (!terminal) t.next_state = walk.states[k + 1];
        t.terminal = terminal;
        agent_.remember(std::move(t));
    }
}

double LowLevelController::relabel(const LayerView& layer, const LayerWalk& walk,
                                   std::span<const double> candidates) {
    // The bits the LLC chose before any fix-up: the running means its states saw.
    std::vector<int> chosen;
    for (float a : walk.actions) chosen.push_back(action_to_bits(a, kernel_bits_));
    std::vector<float> rows;
    for (double g : candidates)
        for (const auto& s : states_for(layer, g, chosen)) rows.insert(rows.end(), s.begin(), s.end());
    const std::vector<float> actions = agent_.act_many(rows);
    const size_t kernels = layer.kernels.size();
    size_t index = 0; // best_explaining asks for the candidates once each, in order
    const auto llc = [&](double) {
        std::vector<float> a(actions.begin() + static_cast<std::ptrdiff_t>(index * kernels),
                             actions.begin() + static_cast<std::ptrdiff_t>((index + 1) * kernels));
        ++index;
        return a;
    };
    return candidates[best_explaining(candidates, walk.actions, llc)];
}

size_t best_explaining(std::span<const double> candidates, std::span<const float> taken,
                       const std::function<std::vector<float>(double)>& llc) {
    size_t best = 0;
    double best_distance = std::numeric_limits<double>::infinity();
    for (size_t i = 0; i < candidates.size(); ++i) {
        const std::vector<float> a = llc(candidates[i]);
        double d = 0.0;
        for (size_t k = 0; k < taken.size(); ++k) {
            const double diff = static_cast<double>(a[k]) - taken[k];
            d += diff * diff;
        }
        if (d < best_distance) {
            best_distance = d;
            best = i;
        }
    }
    return best;
}

} // namespace mps::autoq
