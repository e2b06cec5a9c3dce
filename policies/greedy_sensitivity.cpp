// Policy `greedy_sensitivity` (docs/policies.md, "greedy_sensitivity"): per-layer sensitivities
// from single-layer probes, a greedy descent from the highest to the lowest bits that records the
// whole cost/metric curve, then kernel-wise refinement of the picked point.
//
// Stages, in proposal order (each batch carries its stage name):
//   start    the space's highest policy (pinned layers at their pins), one candidate.
//   phase1   per group and lower candidate (b_w, b_a), only that group changed from the start.
//            grid: every pair of B_w x B_a but the start's; separable: the lower b_w with b_a at
//            the top and the lower b_a with b_w at the top, the rest of the grid estimated as the
//            sum of the two deltas; auto (the default): grid when 1 + the grid's probes + the
//            longest descent fit in the run's max_evaluations, else separable. Batches of at most `limit`, group-major, b_w then b_a
//            descending, so the sequence does not depend on `limit`.
//   descent  from the start, moves lower one group's b_w or b_a to the next allowed value; the
//            move with the smallest estimated delta metric / cost reduction is committed (ties:
//            lower group index, weight move first). Estimates are additive: a group's phase-1
//            delta at the new bits minus the one at its current bits. Moves that do not reduce
//            the cost are skipped; the descent ends when no move is left (on the BitOPs axis:
//            every group at its lowest candidate; on the weight-bytes axis activation moves never
//            reduce the cost, so activations stay at the top). Every committed step is a scored
//            point of the curve, except when the run's max_evaluations cannot cover the rest of
//            the descent: then steps that still break a cost constraint are committed on their
//            estimate, unscored (they could not be picked), keeping evaluations for the points
//            near and under the budget.
//   refine   kernel granularity only (below).
//
// Decisions in detail (docs/policies.md, "greedy_sensitivity", states them for users):
//   - metric: kl = Score::mean_kl; accuracy = -accuracy_percent; sqnr = -logit_sqnr_db. Lower is
//     better. Metrics are made finite so that deltas and sums stay numbers: values are clamped to
//     +-1e6 (NaN counts as the worst); +inf SQNR (logits equal to FP32) becomes -1e6, the best,
//     strictly below any finite SQNR (a finite ratio of doubles stays below 6,400 dB). The bound
//     is far above any real KL (nats) or accuracy and small enough that differences between
//     metrics near it keep ~1e-10 absolute precision.
//   - groups: at layer and kernel granularity each unpinned quantizable layer is a group; at
//     network granularity all unpinned layers form one group that moves together. Pinned layers
//     never change. Phases 1 and 2 give every kernel of a group the same bits.
//   - cost axis: BitOPs, except weight bytes when the objective is weight_bytes or the only cost
//     constraint is max_weight_bytes. Per-group costs come from compute_costs (both are sums over
//     layers, so a group's share does not depend on the other groups).
//   - lookahead k: the top min(k, limit) moves are scored in one batch and the one with the
//     smallest *real* delta metric / cost reduction is committed (the same criterion as the
//     estimate, with the measured metric in place of the additive guess; ties: the better
//     estimated rank). k = 1 commits the top move.
//   - a policy is never scored twice: every score is kept (policy -> score); a move whose policy
//     was already scored (e.g. a first descent step, which phase 1 has measured) is committed
//     with that score and not proposed. At network granularity phase 1 measures the whole grid,
//     so the descent proposes nothing new.
//   - refine runs when `refine` is true, the granularity is kernel and the space has a cost or an
//     accuracy constraint. It starts from pick(...) over every point scored so far (skipped when
//     nothing meets the constraints). Proxy: ||w_k - Q_b(w_k)||^2 with Q the run's weight
//     quantizer and b the kernel's current bits. The usual proxy multiplies it by the mean
//     squared activation feeding the kernel; every kernel of a layer reads the same input tensor
//     (activations are quantized per tensor), so that factor is common to the layer and does not
//     change the ranking inside it; only the ranking is used, so it is left out. (For grouped
//     convolutions the channels feeding different kernels differ; the per-tensor factor ignores
//     that, as the activation quantizer does.)
//   - a refine move in one layer: the most sensitive kernel that can go up is raised one allowed
//     step; the least sensitive kernels (below it in the ranking) are lowered one allowed step
//     each (to 0 from the lowest bits when pruning is allowed) until their freed bits pay for
//     it; the rest of the freed bits raise the next most sensitive kernels (above every lowered
//     one) one step each where they fit. The layer's sum of kernel bits, and so its BitOPs
//     (every kernel of a layer has the same MACs and activation bits), never grows.
//   - a refine round proposes one move per unpinned layer, each applied alone to the current
//     point, skipping moves that break the space or the cost constraints. Moves with a lower
//     metric than the current point improve it. One improving move becomes the current point;
//     several are combined (every improving layer replaced) and the combination is scored in the
//     next batch, alone; it becomes the current point when its metric is below the best single
//     improving move's, which is kept otherwise. A round that improves nothing ends the stage;
//     so does round `refine_rounds`.
//   - observe() only records scores; propose() advances the stages. Given the same context and
//     the same scores, the proposals are the same: no clock, no randomness, and hash maps are
//     only looked up, never iterated.
#include "policies/policy.h"

#include "evaluator/base/error.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cmath>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mps {

namespace {

enum class Metric { kl, accuracy, sqnr };
enum class Stage { start, phase1, descent, refine, done };

constexpr double metric_bound = 1e6;

// Lower is better; always finite (see the header comment).
double metric_value(Metric metric, const Score& score) {
    double value = 0.0;
    switch (metric) {
    case Metric::kl: value = score.mean_kl; break;
    case Metric::accuracy: value = -score.accuracy_percent; break;
    case Metric::sqnr: value = -score.logit_sqnr_db; break;
    }
    if (std::isnan(value)) return metric_bound;
    return std::clamp(value, -metric_bound, metric_bound);
}

Metric parse_metric(const std::string& name) {
    if (name == "kl") return Metric::kl;
    if (name == "accuracy") return Metric::accuracy;
    if (name == "sqnr") return Metric::sqnr;
    throw Error("greedy_sensitivity: unknown metric '" + name + "'; use kl, accuracy or sqnr");
}

// The cost the descent trades the metric against.
bool weight_bytes_axis(const PolicyContext& context) {
    const Constraints& c = context.space.constraints;
    const bool only_weight_bytes = c.max_weight_bytes && !c.max_relative_bitops && !c.max_macs;
    return context.objective == Objective::weight_bytes || only_weight_bytes;
}

// One refine move inside a layer (header comment): new kernel bits whose sum does not exceed the
// old one, or nullopt when no kernel can be raised and paid for. `error[k]` ranks kernel k.
std::optional<std::vector<int>> rebalance(const std::vector<int>& bits,
                                          const std::vector<double>& error,
                                          const std::vector<int>& allowed) {
    std::vector<size_t> order(bits.size()); // least sensitive first; ties by index
    for (size_t k = 0; k < order.size(); ++k) order[k] = k;
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t x, size_t y) { return error[x] < error[y]; });
    size_t receiver = order.size(); // rank of the most sensitive kernel that can go up
    for (size_t rank = order.size(); rank-- > 0;)
        if (next_higher_bits(allowed, bits[order[rank]])) {
            receiver = rank;
            break;
        }
    if (receiver == order.size()) return std::nullopt;

    std::vector<int> moved = bits;
    const size_t top = order[receiver];
    const int need = *next_higher_bits(allowed, bits[top]) - bits[top];
    int freed = 0;
    size_t lowered_end = 0; // ranks below this may have been lowered
    for (size_t rank = 0; rank < receiver && freed < need; ++rank) {
        const size_t k = order[rank];
        if (const auto lower = next_lower_bits(allowed, bits[k])) {
            moved[k] = *lower;
            freed += bits[k] - *lower;
            lowered_end = rank + 1;
        }
    }
    if (freed < need) return std::nullopt;
    moved[top] += need;
    int budget = freed - need;
    for (size_t rank = receiver; rank-- > lowered_end;) {
        const size_t k = order[rank];
        const auto higher = next_higher_bits(allowed, bits[k]);
        if (higher && *higher - bits[k] <= budget) {
            budget -= *higher - bits[k];
            moved[k] = *higher;
        }
    }
    return moved;
}

// Every score seen, in the order seen (what pick() looks at), with a lookup by policy.
class ScoreBook {
public:
    void add(const Evaluation& evaluation) {
        if (index_.count(evaluation.policy)) return;
        index_.emplace(evaluation.policy, points_.size());
        points_.push_back(evaluation);
    }
    const Score* find(const BitPolicy& policy) const {
        const auto it = index_.find(policy);
        return it == index_.end() ? nullptr : &points_[it->second].score;
    }
    const std::vector<Evaluation>& points() const { return points_; }

private:
    std::vector<Evaluation> points_;
    std::unordered_map<BitPolicy, size_t> index_; // looked up only, never iterated
};

// Indices into B_w and B_a (0 = the highest bits).
struct GroupBits {
    size_t w = 0;
    size_t a = 0;
};

// A phase-1 probe: group `group` at `bits`, everything else at the start.
struct Probe {
    size_t group = 0;
    GroupBits bits;
    BitPolicy policy;
};

// A descent move: group `group` to `to`, estimated metric change per unit of cost saved.
struct Move {
    size_t group = 0;
    GroupBits to;
    double ratio = 0.0;
    double saving = 0.0;
};

// One refine candidate: the current point with layer `layer` rebalanced.
struct LayerMove {
    size_t layer = 0;
    BitPolicy policy;
};

class GreedySensitivityPolicy final : public SearchPolicy {
public:
    explicit GreedySensitivityPolicy(const PolicyContext& context);

    Proposal propose(int64_t limit) override;
    void observe(std::span<const Evaluation> scored) override;
    std::string status() const override;

private:
    // Setup.
    void make_groups();
    void make_cost_table();
    void make_probes();
    // Phases.
    std::optional<Proposal> phase1_proposal(int64_t limit);
    void estimate_from_probes();
    std::optional<Proposal> descent_proposal(int64_t limit);
    bool skip_scoring(const Move& top) const;
    void commit(const Move& move);
    double known_metric(const BitPolicy& point) const;
    std::vector<Move> ranked_moves() const;
    void commit_best_move();
    bool start_refine();
    std::optional<Proposal> refine_proposal(int64_t limit);
    void build_round();
    bool resolve_round();
    void resolve_combination();
    void finish_round(const BitPolicy& policy);
    // Helpers.
    Proposal emit(std::vector<BitPolicy> candidates, const char* stage);
    BitPolicy with_group(BitPolicy policy, size_t group, GroupBits bits) const;
    double metric_of(const BitPolicy& policy) const;
    const std::vector<double>& kernel_errors(size_t layer, int bits);
    std::optional<LayerBits> layer_move(const LayerBits& layer, size_t index);

    const Graph& graph_;
    SearchSpace space_;
    Objective objective_;
    double reference_accuracy_;
    Metric metric_;
    int64_t lookahead_;
    bool separable_;
    bool auto_phase1_;
    int64_t max_evaluations_;
    int64_t evaluations_ = 0; // candidates scored so far (every proposal is new)
    bool refine_;
    int64_t refine_rounds_;
    bool weight_bytes_axis_;
    std::unique_ptr<WeightQuantizer> quantizer_;
    std::vector<const Node*> layers_; // quantizable layers, graph order
    BitPolicy start_;

    std::vector<std::vector<size_t>> groups_;                  // layer indices per group
    std::vector<std::vector<std::vector<double>>> cost_;       // [group][w][a]
    std::vector<std::vector<std::vector<double>>> estimate_;   // [group][w][a], metric - start's
    std::vector<Probe> probes_;

    Stage stage_ = Stage::start;
    ScoreBook book_;
    std::vector<BitPolicy> pending_; // the last proposal's candidates
    size_t next_probe_ = 0;

    // Descent.
    std::vector<GroupBits> at_;      // current bits of each group
    BitPolicy descent_point_;
    std::vector<Move> lookahead_moves_; // the moves of the step being scored, rank order
    int64_t steps_ = 0;

    // Refinement.
    BitPolicy refine_point_;
    int64_t round_ = 0;
    bool round_built_ = false;
    std::vector<LayerMove> singles_;       // this round's moves, layer order
    std::vector<BitPolicy> to_propose_;    // the singles not scored before
    size_t next_single_ = 0;
    std::optional<BitPolicy> combination_; // pending combination of improving moves
    BitPolicy best_single_;
    std::map<std::pair<size_t, int>, std::vector<double>> error_cache_; // (layer, bits)
};

GreedySensitivityPolicy::GreedySensitivityPolicy(const PolicyContext& context)
    : graph_(*context.graph), space_(context.space), objective_(context.objective),
      reference_accuracy_(context.reference.accuracy_percent),
      metric_(parse_metric(context.params.text("metric"))),
      lookahead_(context.params.integer("lookahead")),
      separable_(context.params.text("phase1") == "separable"),
      auto_phase1_(context.params.text("phase1") == "auto"),
      max_evaluations_(context.max_evaluations),
      refine_(context.params.boolean("refine")),
      refine_rounds_(context.params.integer("refine_rounds")),
      weight_bytes_axis_(weight_bytes_axis(context)),
      quantizer_(make_weight_quantizer(context.weight_quantizer.name,
                                       context.weight_quantizer.args)),
      layers_(quantizable_layers(graph_)), start_(space_.highest(graph_)) {
    make_groups();
    make_cost_table();
    make_probes();
}

void GreedySensitivityPolicy::make_groups() {
    std::vector<size_t> unpinned;
    for (size_t l = 0; l < start_.layers.size(); ++l)
        if (!space_.is_pinned(start_.layers[l].name)) unpinned.push_back(l);
    if (space_.granularity == Granularity::network) {
        if (!unpinned.empty()) groups_.push_back(unpinned);
        return;
    }
    for (size_t l : unpinned) groups_.push_back({l});
}

// One compute_costs per (b_w, b_a) with every group at it; a group's cost is the sum of its
// layers' share, which depends only on the layers' own bits.
void GreedySensitivityPolicy::make_cost_table() {
    const size_t nw = space_.weight_bits.size(), na = space_.activation_bits.size();
    cost_.assign(groups_.size(), std::vector<std::vector<double>>(nw, std::vector<double>(na)));
    for (size_t w = 0; w < nw; ++w)
        for (size_t a = 0; a < na; ++a) {
            BitPolicy policy = start_;
            for (size_t g = 0; g < groups_.size(); ++g) policy = with_group(policy, g, {w, a});
            const Costs costs = compute_costs(graph_, policy);
            for (size_t g = 0; g < groups_.size(); ++g)
                for (size_t l : groups_[g]) {
                    const LayerCosts& layer = costs.layers[l];
                    cost_[g][w][a] += static_cast<double>(weight_bytes_axis_ ? layer.weight_bits
                                                                             : layer.bitops);
                }
        }
}

void GreedySensitivityPolicy::make_probes() {
    if (auto_phase1_) { // grid when the start, the grid and the whole descent fit in the budget
        const auto nw = static_cast<int64_t>(space_.weight_bits.size());
        const auto na = static_cast<int64_t>(space_.activation_bits.size());
        const auto groups = static_cast<int64_t>(groups_.size());
        const int64_t grid_run = 1 + groups * (nw * na - 1) + groups * (nw - 1 + na - 1);
        separable_ = max_evaluations_ > 0 && grid_run > max_evaluations_;
    }
    for (size_t g = 0; g < groups_.size(); ++g)
        for (size_t w = 0; w < space_.weight_bits.size(); ++w)
            for (size_t a = 0; a < space_.activation_bits.size(); ++a) {
                const bool is_start = w == 0 && a == 0;
                const bool on_axes = w == 0 || a == 0;
                if (is_start || (separable_ && !on_axes)) continue;
                probes_.push_back({g, {w, a}, with_group(start_, g, {w, a})});
            }
}

Proposal GreedySensitivityPolicy::propose(int64_t limit) {
    if (limit < 1)
        throw Error("greedy_sensitivity: propose() needs a limit of at least 1, got " +
                    std::to_string(limit));
    for (;;) {
        switch (stage_) {
        case Stage::start: return emit({start_}, "start");
        case Stage::phase1:
            if (auto proposal = phase1_proposal(limit)) return *proposal;
            estimate_from_probes();
            at_.assign(groups_.size(), GroupBits{});
            descent_point_ = start_;
            stage_ = Stage::descent;
            break;
        case Stage::descent:
            if (auto proposal = descent_proposal(limit)) return *proposal;
            stage_ = start_refine() ? Stage::refine : Stage::done;
            break;
        case Stage::refine:
            if (auto proposal = refine_proposal(limit)) return *proposal;
            stage_ = Stage::done;
            break;
        case Stage::done: pending_.clear(); return {{}, "done"};
        }
    }
}

void GreedySensitivityPolicy::observe(std::span<const Evaluation> scored) {
    if (scored.size() != pending_.size())
        throw Error("greedy_sensitivity: observe() got " + std::to_string(scored.size()) +
                    " scores for a proposal of " + std::to_string(pending_.size()) +
                    " candidates; hand back every candidate of the last proposal, in order");
    for (size_t i = 0; i < scored.size(); ++i) {
        if (!(scored[i].policy == pending_[i]))
            throw Error("greedy_sensitivity: observe(): score " + std::to_string(i) +
                        " is for another policy than the one proposed; keep the proposal's order");
        book_.add(scored[i]);
    }
    evaluations_ += static_cast<int64_t>(scored.size());
    pending_.clear();
    if (stage_ == Stage::start && book_.find(start_)) stage_ = Stage::phase1;
}

std::string GreedySensitivityPolicy::status() const {
    switch (stage_) {
    case Stage::start: return "start";
    case Stage::phase1:
        return "phase 1: " + std::to_string(next_probe_ - pending_.size()) + "/" +
               std::to_string(probes_.size());
    case Stage::descent: return "descent: step " + std::to_string(steps_);
    case Stage::refine: return "refine: round " + std::to_string(round_ + 1);
    case Stage::done: return "done";
    }
    return {};
}

// --- Phase 1 ---------------------------------------------------------------------------------

std::optional<Proposal> GreedySensitivityPolicy::phase1_proposal(int64_t limit) {
    std::vector<BitPolicy> batch;
    while (next_probe_ < probes_.size() && static_cast<int64_t>(batch.size()) < limit)
        batch.push_back(probes_[next_probe_++].policy);
    if (batch.empty()) return std::nullopt;
    return emit(std::move(batch), "phase1");
}

// estimate_[g][w][a]: the group's measured metric change at (w, a); in separable mode the
// off-axis pairs are the sum of the weight-axis and the activation-axis changes.
void GreedySensitivityPolicy::estimate_from_probes() {
    const size_t nw = space_.weight_bits.size(), na = space_.activation_bits.size();
    estimate_.assign(groups_.size(), std::vector<std::vector<double>>(nw, std::vector<double>(na)));
    const double start_metric = metric_of(start_);
    for (const Probe& probe : probes_)
        estimate_[probe.group][probe.bits.w][probe.bits.a] = metric_of(probe.policy) - start_metric;
    if (!separable_) return;
    for (auto& table : estimate_)
        for (size_t w = 1; w < nw; ++w)
            for (size_t a = 1; a < na; ++a) table[w][a] = table[w][0] + table[0][a];
}

// --- Phase 2 ---------------------------------------------------------------------------------

// Scores the top moves that are not scored yet; commits a step whose moves all are.
std::optional<Proposal> GreedySensitivityPolicy::descent_proposal(int64_t limit) {
    for (;;) {
        if (!lookahead_moves_.empty()) commit_best_move(); // the last batch scored them
        std::vector<Move> moves = ranked_moves();
        if (moves.empty()) return std::nullopt;
        if (skip_scoring(moves.front())) {
            commit(moves.front());
            continue;
        }
        const auto k = static_cast<size_t>(std::min(lookahead_, limit));
        moves.resize(std::min(moves.size(), k));
        lookahead_moves_ = moves;
        std::vector<BitPolicy> batch;
        for (const Move& move : moves) {
            BitPolicy policy = with_group(descent_point_, move.group, move.to);
            if (!book_.find(policy)) batch.push_back(std::move(policy));
        }
        if (!batch.empty()) return emit(std::move(batch), "descent");
    }
}

// When the run's evaluations cannot cover the rest of the descent, steps that still break a cost
// constraint are committed on their estimate alone, unscored: such points cannot be picked, and
// the evaluations are kept for the points near and under the budget.
bool GreedySensitivityPolicy::skip_scoring(const Move& top) const {
    if (max_evaluations_ <= 0 || !space_.constraints.has_cost_constraint()) return false;
    int64_t steps_left = 0;
    for (const GroupBits& bits : at_)
        steps_left += static_cast<int64_t>(space_.weight_bits.size() - 1 - bits.w) +
                      static_cast<int64_t>(space_.activation_bits.size() - 1 - bits.a);
    if (steps_left <= max_evaluations_ - evaluations_) return false;
    const BitPolicy next = with_group(descent_point_, top.group, top.to);
    return !meets_cost_constraints(space_.constraints, compute_costs(graph_, next));
}

// Every move that lowers the cost, best (smallest estimated delta metric per cost saved) first;
// ties keep the generation order: group index, weight move before activation move.
std::vector<Move> GreedySensitivityPolicy::ranked_moves() const {
    std::vector<Move> moves;
    for (size_t g = 0; g < groups_.size(); ++g) {
        const GroupBits now = at_[g];
        std::vector<GroupBits> targets;
        if (now.w + 1 < space_.weight_bits.size()) targets.push_back({now.w + 1, now.a});
        if (now.a + 1 < space_.activation_bits.size()) targets.push_back({now.w, now.a + 1});
        for (GroupBits to : targets) {
            const double saving = cost_[g][now.w][now.a] - cost_[g][to.w][to.a];
            if (saving <= 0.0) continue;
            const double delta = estimate_[g][to.w][to.a] - estimate_[g][now.w][now.a];
            moves.push_back({g, to, delta / saving, saving});
        }
    }
    std::stable_sort(moves.begin(), moves.end(),
                     [](const Move& x, const Move& y) { return x.ratio < y.ratio; });
    return moves;
}

// Among the scored moves of this step, the one with the smallest real delta metric per cost
// saved becomes the new descent point.
void GreedySensitivityPolicy::commit_best_move() {
    const double now = known_metric(descent_point_);
    const Move* best = nullptr;
    double best_ratio = 0.0;
    for (const Move& move : lookahead_moves_) {
        const double ratio =
            (metric_of(with_group(descent_point_, move.group, move.to)) - now) / move.saving;
        if (!best || ratio < best_ratio) {
            best = &move;
            best_ratio = ratio;
        }
    }
    commit(*best);
    lookahead_moves_.clear();
}

void GreedySensitivityPolicy::commit(const Move& move) {
    at_[move.group] = move.to;
    descent_point_ = with_group(descent_point_, move.group, move.to);
    ++steps_;
}

// The point's measured metric, or (a descent point committed unscored) the additive estimate.
double GreedySensitivityPolicy::known_metric(const BitPolicy& point) const {
    if (book_.find(point)) return metric_of(point);
    double metric = metric_of(start_);
    for (size_t g = 0; g < groups_.size(); ++g) metric += estimate_[g][at_[g].w][at_[g].a];
    return metric;
}

// --- Phase 3 ---------------------------------------------------------------------------------

bool GreedySensitivityPolicy::start_refine() {
    const Constraints& c = space_.constraints;
    if (!refine_ || refine_rounds_ == 0 || space_.granularity != Granularity::kernel) return false;
    if (!c.has_cost_constraint() && !c.max_accuracy_drop) return false;
    const auto chosen = pick(book_.points(), c, objective_, reference_accuracy_);
    if (!chosen) return false;
    refine_point_ = book_.points()[*chosen].policy;
    return true;
}

std::optional<Proposal> GreedySensitivityPolicy::refine_proposal(int64_t limit) {
    for (;;) {
        if (combination_) {
            if (!book_.find(*combination_)) return emit({*combination_}, "refine");
            resolve_combination();
            continue;
        }
        if (round_ >= refine_rounds_) return std::nullopt;
        if (!round_built_) build_round();
        if (singles_.empty()) return std::nullopt;
        if (next_single_ < to_propose_.size()) {
            std::vector<BitPolicy> batch;
            while (next_single_ < to_propose_.size() && static_cast<int64_t>(batch.size()) < limit)
                batch.push_back(to_propose_[next_single_++]);
            return emit(std::move(batch), "refine");
        }
        if (!resolve_round()) return std::nullopt; // nothing improved: the refinement is over
    }
}

// One move per unpinned layer, each alone on the current point, inside the space and the cost
// constraints.
void GreedySensitivityPolicy::build_round() {
    singles_.clear();
    to_propose_.clear();
    next_single_ = 0;
    for (size_t l = 0; l < refine_point_.layers.size(); ++l) {
        if (space_.is_pinned(refine_point_.layers[l].name)) continue;
        const auto moved = layer_move(refine_point_.layers[l], l);
        if (!moved) continue;
        BitPolicy candidate = refine_point_;
        candidate.layers[l] = *moved;
        if (!space_.violation(graph_, candidate).empty()) continue;
        if (!meets_cost_constraints(space_.constraints, compute_costs(graph_, candidate))) continue;
        if (!book_.find(candidate)) to_propose_.push_back(candidate);
        singles_.push_back({l, std::move(candidate)});
    }
    round_built_ = true;
}

// Every single move of the round is scored: moves to the best one, or sets up the combination
// of the improving ones. False when none improves.
bool GreedySensitivityPolicy::resolve_round() {
    const double now = metric_of(refine_point_);
    std::vector<const LayerMove*> improving;
    for (const LayerMove& single : singles_)
        if (metric_of(single.policy) < now) improving.push_back(&single);
    if (improving.empty()) return false;
    const LayerMove* best = improving.front();
    for (const LayerMove* single : improving)
        if (metric_of(single->policy) < metric_of(best->policy)) best = single;
    best_single_ = best->policy;
    BitPolicy combined = refine_point_;
    for (const LayerMove* single : improving)
        combined.layers[single->layer] = single->policy.layers[single->layer];
    const bool fits = improving.size() > 1 && space_.violation(graph_, combined).empty() &&
                      meets_cost_constraints(space_.constraints, compute_costs(graph_, combined));
    if (fits) {
        combination_ = std::move(combined);
        round_built_ = false;
    } else {
        finish_round(best_single_);
    }
    return true;
}

void GreedySensitivityPolicy::resolve_combination() {
    const bool better = metric_of(*combination_) < metric_of(best_single_);
    const BitPolicy chosen = better ? *combination_ : best_single_;
    combination_.reset();
    finish_round(chosen);
}

void GreedySensitivityPolicy::finish_round(const BitPolicy& policy) {
    refine_point_ = policy;
    ++round_;
    round_built_ = false;
}

// The layer's kernels ranked by quantization error at their own bits, rebalanced.
std::optional<LayerBits> GreedySensitivityPolicy::layer_move(const LayerBits& layer, size_t index) {
    std::vector<double> error(layer.weight_bits.size());
    for (size_t k = 0; k < error.size(); ++k)
        error[k] = kernel_errors(index, layer.weight_bits[k])[k];
    const auto bits = rebalance(layer.weight_bits, error, space_.kernel_weight_bits());
    if (!bits) return std::nullopt;
    LayerBits moved = layer;
    moved.weight_bits = *bits;
    return moved;
}

// ||w_k - Q_bits(w_k)||^2 for every kernel k of layer `layer`, computed once per (layer, bits).
const std::vector<double>& GreedySensitivityPolicy::kernel_errors(size_t layer, int bits) {
    const auto key = std::make_pair(layer, bits);
    if (const auto it = error_cache_.find(key); it != error_cache_.end()) return it->second;
    const Tensor& weight = layers_[layer]->weight;
    const int64_t kernels = kernel_count(*layers_[layer]);
    const size_t size = static_cast<size_t>(weight.numel() / kernels);
    std::vector<double> errors(static_cast<size_t>(kernels));
    std::vector<float> quantized(size);
    for (size_t k = 0; k < errors.size(); ++k) {
        const std::span<const float> w(weight.data.data() + k * size, size);
        quantizer_->quantize_kernel(w, bits, quantized);
        double sum = 0.0;
        for (size_t i = 0; i < size; ++i) {
            const double d = static_cast<double>(w[i]) - quantized[i];
            sum += d * d;
        }
        errors[k] = sum;
    }
    return error_cache_.emplace(key, std::move(errors)).first->second;
}

// --- Helpers ---------------------------------------------------------------------------------

Proposal GreedySensitivityPolicy::emit(std::vector<BitPolicy> candidates, const char* stage) {
    pending_ = candidates;
    return {std::move(candidates), stage};
}

BitPolicy GreedySensitivityPolicy::with_group(BitPolicy policy, size_t group,
                                              GroupBits bits) const {
    for (size_t l : groups_[group]) {
        LayerBits& layer = policy.layers[l];
        layer.activation_bits = space_.activation_bits[bits.a];
        std::fill(layer.weight_bits.begin(), layer.weight_bits.end(), space_.weight_bits[bits.w]);
    }
    return policy;
}

// The metric of a policy already scored (every caller asks only about scored ones).
double GreedySensitivityPolicy::metric_of(const BitPolicy& policy) const {
    const Score* score = book_.find(policy);
    if (!score)
        throw Failure("greedy_sensitivity: internal error: no score for " + policy.to_string());
    return metric_value(metric_, *score);
}

std::unique_ptr<SearchPolicy> make_greedy_sensitivity(const PolicyContext& context) {
    if (!context.graph)
        throw Error("greedy_sensitivity: the policy context has no graph; set "
                    "PolicyContext::graph");
    return std::make_unique<GreedySensitivityPolicy>(context);
}

} // namespace

PolicyInfo greedy_sensitivity_policy_info() {
    return {"greedy_sensitivity",
            "per-layer sensitivity probes, greedy descent over the whole cost curve, kernel-wise "
            "refinement of the pick",
            {text_param("metric", "kl", {"kl", "accuracy", "sqnr"},
                        "sensitivity metric: mean KL from FP32, accuracy, or logit SQNR"),
             integer_param("lookahead", "1", 1, 16,
                           "descent moves scored for real before one is committed"),
             text_param("phase1", "auto", {"auto", "grid", "separable"},
                        "probe every (w, a) pair per layer (grid), or only each axis with sums "
                        "estimating the rest (separable); auto: grid when the start, the grid "
                        "and the whole descent fit in max_evaluations, else separable"),
             boolean_param("refine", "true",
                           "kernel granularity: move bits between the kernels of each layer of "
                           "the picked point at equal layer BitOPs"),
             integer_param("refine_rounds", "4", 0, 100, "most refinement rounds")},
            make_greedy_sensitivity};
}

} // namespace mps
