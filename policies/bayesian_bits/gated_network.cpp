#include "policies/bayesian_bits/gated_network.h"

#include "evaluator/base/error.h"
#include "evaluator/base/host_chunks.h"
#include "evaluator/base/seeded_random.h"
#include "evaluator/engine/onednn_util.h"
#include "evaluator/ir/costs.h"
#include "evaluator/train/optimizer.h"
#include "evaluator/train/train_network.h"
#include "evaluator/train/trainer.h"
#include "policies/bayesian_bits/run_grid.h"

#include <algorithm>
#include <cmath>
#include <random>

namespace mps {

namespace {

constexpr size_t gate_count = residual_gate_count;
// Logits standing for a gate that is not learned: its probability of being on is 1 or 0 to
// within 1e-13, so the regularizer sees it as the constant it is.
constexpr double fixed_open_logit = 30.0, fixed_closed_logit = -30.0;
// Learned ranges never reach 0 (the quantizer needs x_min < x_max).
constexpr float range_floor = 1e-6f;

// The gates and ranges of one quantizer: `units` gate vectors and ranges (one per output channel,
// or one), their learned parameters, the current sample and this step's gradients.
struct GateSet {
    GateStates states{};
    GateLevels levels{}; // the bits of each gate's level
    size_t units = 0;
    double macs_ratio = 1.0;
    bool fixed = false; // after fix_gates(): every gate at its thresholded value
    std::vector<float> logits, logits_grad; // units * gate_count
    std::vector<float> ranges, ranges_grad; // units
    std::vector<ResidualGates> gates;       // the current sample
    std::vector<GateGradient> dz_dlogit;    // of the current sample
    std::vector<GateGradient> loss_dz;      // dL/dz accumulated by this step's backward
    std::vector<double> loss_drange;
    std::vector<GateGradient> reg_grad;     // dR/dlog_alpha of this step

    GateSet(GateStates s, GateLevels l, std::vector<float> initial_ranges, double ratio)
        : states(s), levels(l), units(initial_ranges.size()), macs_ratio(ratio),
          logits(units * gate_count), logits_grad(units * gate_count, 0.0f),
          ranges(std::move(initial_ranges)), ranges_grad(units, 0.0f), gates(units),
          dz_dlogit(units), loss_dz(units), loss_drange(units), reg_grad(units) {
        for (size_t u = 0; u < units; ++u)
            for (size_t k = 0; k < gate_count; ++k)
                logits[u * gate_count + k] = static_cast<float>(
                    states[k] == GateState::closed ? fixed_closed_logit
                    : states[k] == GateState::open ? fixed_open_logit
                                                   : hard_concrete::log_alpha_on);
    }

    bool learns(size_t k) const { return states[k] == GateState::learned && !fixed; }
    bool prunable() const { return states[0] == GateState::learned; }

    GateLogits unit_logits(size_t u) const {
        GateLogits l{};
        for (size_t k = 0; k < gate_count; ++k) l[k] = logits[u * gate_count + k];
        return l;
    }

    ResidualGates thresholded(size_t u) const { return thresholded_gates(unit_logits(u), prunable()); }

    void sample(std::mt19937_64& rng) {
        for (size_t u = 0; u < units; ++u) {
            const ResidualGates hard = thresholded(u);
            for (size_t k = 0; k < gate_count; ++k) {
                dz_dlogit[u][k] = 0.0;
                if (!learns(k)) {
                    gates[u][k] = hard[k];
                    continue;
                }
                // (draw + 0.5) * 2^-53 lies strictly inside (0, 1).
                const double noise = (static_cast<double>(rng() >> 11) + 0.5) * 0x1p-53;
                const GateSample s = sample_gate(noise, logits[u * gate_count + k]);
                gates[u][k] = static_cast<float>(s.z);
                dz_dlogit[u][k] = s.dz_dlog_alpha;
            }
        }
        std::fill(loss_dz.begin(), loss_dz.end(), GateGradient{});
        std::fill(loss_drange.begin(), loss_drange.end(), 0.0);
        std::fill(reg_grad.begin(), reg_grad.end(), GateGradient{});
    }

    void use_thresholded() {
        for (size_t u = 0; u < units; ++u) gates[u] = thresholded(u);
    }

    bool learns_any() const {
        return !fixed && std::find(states.begin(), states.end(), GateState::learned) != states.end();
    }

    // R_q of this set (regularizer `bits`), its gradient added to reg_grad.
    double add_bit_regularizer() {
        if (!learns_any()) return 0.0;
        const BitRegularizer reg = bit_regularizer(all_logits(), macs_ratio, prunable(), levels);
        for (size_t u = 0; u < units; ++u)
            for (size_t k = 0; k < gate_count; ++k) reg_grad[u][k] += reg.grad[u][k];
        return reg.value;
    }

    std::vector<GateLogits> all_logits() const {
        std::vector<GateLogits> all;
        for (size_t u = 0; u < units; ++u) all.push_back(unit_logits(u));
        return all;
    }

    // Writes the parameter gradients of this step (after backward and the regularizer).
    void finish_gradients(double mu) {
        for (size_t u = 0; u < units; ++u) {
            for (size_t k = 0; k < gate_count; ++k) {
                double g = 0.0;
                if (learns(k)) g = loss_dz[u][k] * dz_dlogit[u][k] + mu * reg_grad[u][k];
                logits_grad[u * gate_count + k] = static_cast<float>(g);
            }
            ranges_grad[u] = static_cast<float>(loss_drange[u]);
        }
    }

    void clamp_ranges() {
        for (float& r : ranges) r = std::max(r, range_floor);
    }
};

ResidualQuantizer weight_quantizer(float range) { return ResidualQuantizer::symmetric(range); }

ResidualQuantizer activation_quantizer(float range, bool is_signed) {
    return is_signed ? ResidualQuantizer::symmetric(range) : ResidualQuantizer(0.0f, range);
}

// The gated residual quantizer of one layer's input, run by the layer's fake-quant layer.
class GatedActivation final : public ActivationHook {
public:
    GatedActivation(GateSet& set, bool is_signed) : set_(set), is_signed_(is_signed) {}

    void forward(const float* x, float* y, int64_t n, const uint8_t* inside) override {
        const ResidualQuantizer q = activation_quantizer(set_.ranges[0], is_signed_);
        const ResidualGates z = set_.gates[0];
        const int64_t tasks = host_chunk_count(n);
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (int64_t t = 0; t < tasks; ++t) {
            const auto [begin, size] = host_chunk_at(t, n);
            q.quantize(std::span(x + begin, size), z, std::span(y + begin, size));
            if (inside)
                for (int64_t i = begin; i < begin + size; ++i)
                    if (!inside[i]) y[i] = 0.0f;
        }
    }

    void backward(const float* x, const float* dy, float* dx, int64_t n,
                  const uint8_t* inside) override {
        const ResidualQuantizer q = activation_quantizer(set_.ranges[0], is_signed_);
        const ResidualGates z = set_.gates[0];
        const int64_t tasks = host_chunk_count(n);
        std::vector<GateGradient> dz(static_cast<size_t>(tasks), GateGradient{});
        std::vector<double> drange(static_cast<size_t>(tasks), 0.0);
#pragma omp parallel for schedule(static) if (tasks > 1)
        for (int64_t t = 0; t < tasks; ++t) {
            const auto [begin, size] = host_chunk_at(t, n);
            const float* grad = dy + begin;
            if (inside) { // padding must not reach the gate and range gradients
                // Masked into dx, which backward_per_channel lets alias its grad_out: no copy.
                for (int64_t i = begin; i < begin + size; ++i) dx[i] = inside[i] ? dy[i] : 0.0f;
                grad = dx + begin;
            }
            q.backward_per_channel(std::span(x + begin, size), std::span(&z, 1),
                                   std::span(grad, size), std::span(dx + begin, size),
                                   std::span(&dz[static_cast<size_t>(t)], 1),
                                   std::span(&drange[static_cast<size_t>(t)], 1));
        }
        for (int64_t t = 0; t < tasks; ++t) {
            for (size_t k = 0; k < gate_count; ++k) set_.loss_dz[0][k] += dz[static_cast<size_t>(t)][k];
            set_.loss_drange[0] += drange[static_cast<size_t>(t)];
        }
    }

private:
    GateSet& set_;
    bool is_signed_;
};

// GateGrid::run: the run's activation quantizer at every level (run_grid.h) as the layer's hook.
class RunGridHook final : public ActivationHook {
public:
    RunGridHook(GateSet& set, RunGridActivation levels) : set_(set), levels_(levels) {}

    void forward(const float* x, float* y, int64_t n, const uint8_t* inside) override {
        levels_.forward(set_.gates[0], x, y, n, inside);
    }
    void backward(const float* x, const float* dy, float* dx, int64_t n,
                  const uint8_t* inside) override {
        levels_.backward(set_.gates[0], x, dy, dx, n, inside, set_.loss_dz[0]);
    }

private:
    GateSet& set_;
    RunGridActivation levels_;
};

float max_magnitude(std::span<const float> w) {
    float m = 0.0f;
    for (float v : w) m = std::max(m, std::fabs(v));
    return std::max(m, range_floor);
}

template <typename G>
auto& node_named(G& graph, const std::string& name) {
    for (auto& node : graph.nodes)
        if (node.name == name) return node;
    throw Error("bayesian_bits: the graph has no node '" + name + "'");
}

// A plain float buffer as a TrainParameter an Optimizer can update.
TrainParameter buffer_parameter(const dnnl::engine& engine, std::vector<float>& value,
                                std::vector<float>& grad) {
    TrainParameter p;
    p.plain = onednn::plain_desc({static_cast<int64_t>(value.size())});
    p.value = dnnl::memory(p.plain, engine, value.data());
    p.grad = dnnl::memory(p.plain, engine, grad.data());
    return p;
}

OptimizerOptions adam() {
    OptimizerOptions o;
    o.kind = "adam";
    o.weight_decay = 0.0;
    return o;
}

} // namespace

GateStates gate_states(std::span<const int> allowed, const GateLevels& levels) {
    int lowest = 0, highest = 0;
    bool prune = false;
    for (int b : allowed) {
        if (b == 0) {
            prune = true;
            continue;
        }
        lowest = lowest == 0 ? b : std::min(lowest, b);
        highest = std::max(highest, b);
    }
    if (highest == 0)
        throw Error("bayesian_bits: no non-zero bit-width to choose from; allow at least one");
    size_t floor_level = gate_count - 1; // the smallest level reaching the lowest allowed bits
    for (size_t k = 0; k < gate_count; ++k)
        if (levels[k] >= lowest) {
            floor_level = k;
            break;
        }
    GateStates states{};
    for (size_t k = 0; k < gate_count; ++k) {
        if (levels[k] > highest && k > floor_level)
            states[k] = GateState::closed;
        else if (k <= floor_level)
            states[k] = GateState::open;
        else
            states[k] = GateState::learned;
    }
    if (prune) states[0] = GateState::learned;
    return states;
}

GateLevels run_levels(std::span<const int> allowed) {
    std::vector<int> bits;
    for (int b : allowed)
        if (b != 0) bits.push_back(b);
    std::sort(bits.begin(), bits.end());
    bits.erase(std::unique(bits.begin(), bits.end()), bits.end());
    if (bits.empty() || bits.size() > gate_count)
        throw Error("bayesian_bits: grid `run` gates one level per allowed bit-width, at most " +
                    std::to_string(gate_count) + "; " + std::to_string(bits.size()) +
                    " are allowed; allow between 1 and " + std::to_string(gate_count));
    for (int pad : {2, 3, 4, 5, 6, 7, 8, 16, 32})
        if (bits.size() < gate_count && pad > bits.back()) bits.push_back(pad);
    if (bits.size() < gate_count)
        throw Error("bayesian_bits: grid `run` found no bit-widths above " +
                    std::to_string(bits.back()) + " to fill its " + std::to_string(gate_count) +
                    " levels; allow more bit-widths or use grid `bayesian_bits`");
    GateLevels levels{};
    std::copy(bits.begin(), bits.end(), levels.begin());
    return levels;
}

int nearest_allowed_bits(int learned, std::span<const int> allowed) {
    int above = 0, largest = 0;
    for (int b : allowed) {
        if (b == learned) return b;
        largest = std::max(largest, b);
        if (b > learned && (above == 0 || b < above)) above = b;
    }
    return above != 0 ? above : largest;
}

struct GatedNetwork::Impl {
    struct Layer {
        GatedLayer setup;
        std::unique_ptr<GateSet> weights;     // learned layers
        std::unique_ptr<GateSet> activations; // learned layers with a quantized input
        std::vector<Tensor> weight_levels;    // GateGrid::run: the run's quantizer per level
    };

    GatedOptions options;
    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    Graph master, staged;
    std::vector<Layer> layers;
    std::shared_ptr<const WeightQuantizer> run_quantizer; // pinned layers; GateGrid::run
    std::unique_ptr<TrainNetwork> network;
    std::mt19937_64 rng;
    std::vector<TrainParameter> logit_parameters, range_parameters, weight_parameters;
    std::vector<std::vector<float>> weight_grads;
    std::unique_ptr<Optimizer> logit_optimizer, range_optimizer, weight_optimizer;
    std::vector<float> diff;

    Impl(const Graph& folded, std::vector<GatedLayer> setups, const Calibration& calibration,
         const GatedOptions& o)
        : options(o), master(folded), staged(folded),
          run_quantizer(make_weight_quantizer(o.weight_quantizer.name, o.weight_quantizer.args)),
          rng(o.seed) {
        if (o.batch < 1) throw Error("bayesian_bits: the batch must be at least 1");
        build_layers(std::move(setups), calibration);
        network = std::make_unique<TrainNetwork>(master, o.batch, NetworkMode::training,
                                                 activation_quantizers(calibration));
        for (Layer& l : layers)
            for (GateSet* set : {l.weights.get(), l.activations.get()})
                if (set) {
                    logit_parameters.push_back(buffer_parameter(engine, set->logits, set->logits_grad));
                    range_parameters.push_back(buffer_parameter(engine, set->ranges, set->ranges_grad));
                }
        logit_optimizer = std::make_unique<Optimizer>(adam(), logit_parameters);
        range_optimizer = std::make_unique<Optimizer>(adam(), range_parameters);
        if (o.train_weights) make_weight_parameters();
        diff.resize(static_cast<size_t>(o.batch * network->output_dims().back()));
    }

    void build_layers(std::vector<GatedLayer> setups, const Calibration& calibration) {
        const std::vector<const Node*> nodes = quantizable_layers(master);
        if (setups.size() != nodes.size())
            throw Error("bayesian_bits: " + std::to_string(setups.size()) + " layer setups for " +
                        std::to_string(nodes.size()) + " quantizable layers");
        const Costs costs = compute_costs(master, BitPolicy::uniform(master, 8, 8));
        int64_t max_macs = 1;
        for (const LayerCosts& c : costs.layers) max_macs = std::max(max_macs, c.macs);
        for (size_t i = 0; i < nodes.size(); ++i) {
            const Node& node = *nodes[i];
            if (setups[i].name != node.name)
                throw Error("bayesian_bits: layer setup " + std::to_string(i) + " names '" +
                            setups[i].name + "' where the graph has '" + node.name + "'");
            Layer layer{std::move(setups[i]), nullptr, nullptr, {}};
            if (layer.setup.learned) {
                const double ratio = static_cast<double>(costs.layers[i].macs) / max_macs;
                check_levels(layer.setup);
                layer.weights = std::make_unique<GateSet>(
                    layer.setup.weight_gates, layer.setup.weight_levels, initial_weight_ranges(node),
                    ratio);
                const std::string& input = node.inputs.at(0);
                layer.activations = std::make_unique<GateSet>(
                    layer.setup.activation_gates, layer.setup.activation_levels,
                    std::vector<float>{std::max(calibration.range(input, float_bits), range_floor)},
                    ratio);
            }
            layers.push_back(std::move(layer));
        }
    }

    // The nested grid has its own levels; the run grid takes any ascending bit-widths the run's
    // quantizers accept.
    void check_levels(const GatedLayer& setup) const {
        for (const GateLevels& levels : {setup.weight_levels, setup.activation_levels}) {
            bool ascending = valid_activation_bits(levels[0]); // 1..8, 16, 32: no 0 in a chain
            for (size_t k = 1; k < gate_count; ++k)
                ascending = ascending && valid_activation_bits(levels[k]) && levels[k] > levels[k - 1];
            if (options.grid == GateGrid::bayesian_bits && levels != residual_bits)
                throw Error("bayesian_bits: layer '" + setup.name + "' gates levels other than the "
                            "nested grid's 2, 4, 8, 16, 32; use grid `run`");
            if (options.grid == GateGrid::run && !ascending)
                throw Error("bayesian_bits: layer '" + setup.name + "' gates levels that are not "
                            "ascending bit-widths of 1..8, 16, 32");
        }
    }

    std::vector<float> initial_weight_ranges(const Node& node) const {
        const std::vector<float>& w = node.weight.data;
        if (!options.per_kernel) return {max_magnitude(w)};
        const size_t kernels = static_cast<size_t>(kernel_count(node)), size = w.size() / kernels;
        std::vector<float> ranges;
        for (size_t k = 0; k < kernels; ++k)
            ranges.push_back(max_magnitude(std::span(w).subspan(k * size, size)));
        return ranges;
    }

    std::vector<ActivationQuantizer> activation_quantizers(const Calibration& calibration) {
        std::vector<ActivationQuantizer> result;
        const std::vector<const Node*> nodes = quantizable_layers(master);
        for (size_t i = 0; i < layers.size(); ++i) {
            const Layer& l = layers[i];
            const std::string& input = nodes[i]->inputs.at(0);
            ActivationQuantizer q;
            q.layer = l.setup.name;
            q.is_signed = !calibration.is_unsigned.at(input);
            if (l.activations) {
                q.bits = 8; // any bit-width below 32 inserts the layer; the hook does the work
                if (options.grid == GateGrid::run) {
                    std::array<float, gate_count> ranges{};
                    for (size_t k = 0; k < gate_count; ++k)
                        if (l.activations->levels[k] != float_bits)
                            ranges[k] = calibration.range(input, l.activations->levels[k]);
                    q.hook = std::make_shared<RunGridHook>(
                        *l.activations,
                        RunGridActivation(l.activations->levels, ranges, q.is_signed));
                } else {
                    q.hook = std::make_shared<GatedActivation>(*l.activations, q.is_signed);
                }
            } else {
                q.bits = l.setup.fixed.activation_bits;
                q.range = q.bits == float_bits ? 0.0f : calibration.range(input, q.bits);
            }
            result.push_back(q);
        }
        return result;
    }

    void make_weight_parameters() {
        weight_grads.reserve(layers.size() * 2); // parameters point into these buffers
        for (const Layer& l : layers) {
            Node& node = node_named(master, l.setup.name);
            for (Tensor Node::*field : {&Node::weight, &Node::bias}) {
                Tensor& t = node.*field;
                if (t.data.empty()) continue;
                weight_grads.emplace_back(t.data.size(), 0.0f);
                TrainParameter p = buffer_parameter(engine, t.data, weight_grads.back());
                p.node = node.name;
                p.field = field;
                weight_parameters.push_back(p);
            }
        }
        weight_optimizer = std::make_unique<Optimizer>(adam(), weight_parameters);
    }

    // The master weights of every layer quantized with the current gates into the network.
    void stage_weights() {
        for (Layer& l : layers) {
            const Node& m = node_named(master, l.setup.name);
            Node& s = node_named(staged, l.setup.name);
            s.bias = m.bias;
            if (!l.weights) {
                const std::vector<int> bits(static_cast<size_t>(kernel_count(m)),
                                            l.setup.fixed.weight_bits);
                s.weight = quantize_weights(*run_quantizer, m.weight, bits);
                continue;
            }
            const GateSet& g = *l.weights;
            const size_t size = m.weight.data.size() / g.units;
            if (options.grid == GateGrid::run) {
                stage_run_levels(l, g, size, s.weight.data);
                continue;
            }
            for (size_t u = 0; u < g.units; ++u)
                weight_quantizer(g.ranges[u])
                    .quantize(std::span(m.weight.data).subspan(u * size, size), g.gates[u],
                              std::span(s.weight.data).subspan(u * size, size));
        }
        network->load(staged);
    }

    // GateGrid::run: the run's quantizer at every level (requantized while weights train), mixed
    // per unit by its gates.
    void stage_run_levels(Layer& l, const GateSet& g, size_t size, std::vector<float>& out) {
        if (l.weight_levels.empty() || options.train_weights) {
            const Node& m = node_named(master, l.setup.name);
            l.weight_levels.clear();
            for (int b : g.levels) {
                const std::vector<int> bits(static_cast<size_t>(kernel_count(m)), b);
                l.weight_levels.push_back(quantize_weights(*run_quantizer, m.weight, bits));
            }
        }
        for (size_t u = 0; u < g.units; ++u)
            mix_weight_levels(unit_levels(l, u, size), g.gates[u],
                              std::span(out).subspan(u * size, size));
    }

    // The levels of unit u (values u * size .. (u + 1) * size of every level tensor).
    static std::vector<std::span<const float>> unit_levels(const Layer& l, size_t u, size_t size) {
        std::vector<std::span<const float>> levels;
        for (const Tensor& t : l.weight_levels) levels.push_back(std::span(t.data).subspan(u * size, size));
        return levels;
    }

    // GateGrid::run backward of one layer's weights (run_grid.h).
    static void run_levels_backward(const Layer& l, GateSet& g, size_t size,
                                    std::span<const float> grad, std::span<float> master_grad) {
        for (size_t u = 0; u < g.units; ++u)
            weight_levels_backward(unit_levels(l, u, size), g.gates[u], grad.subspan(u * size, size),
                                   master_grad.subspan(u * size, size), g.loss_dz[u]);
    }

    // dL/dz and dL/da of the weight gates and, when training weights, the master gradients.
    void weight_backward() {
        size_t next_parameter = 0;
        for (const Layer& l : layers) {
            if (!l.weights && !options.train_weights) continue;
            const Node& m = node_named(master, l.setup.name);
            const Tensor grad = network->gradient(l.setup.name, &Node::weight);
            std::vector<float> master_grad(grad.data.begin(), grad.data.end()); // STE for pins
            if (l.weights && options.grid == GateGrid::run) {
                run_levels_backward(l, *l.weights, m.weight.data.size() / l.weights->units,
                                    grad.data, master_grad);
            } else if (l.weights) {
                GateSet& g = *l.weights;
                const size_t size = m.weight.data.size() / g.units;
                for (size_t u = 0; u < g.units; ++u)
                    weight_quantizer(g.ranges[u])
                        .backward_per_channel(
                            std::span(m.weight.data).subspan(u * size, size), std::span(&g.gates[u], 1),
                            std::span(grad.data).subspan(u * size, size),
                            std::span(master_grad).subspan(u * size, size),
                            std::span(&g.loss_dz[u], 1), std::span(&g.loss_drange[u], 1));
            }
            if (!options.train_weights) continue;
            std::copy(master_grad.begin(), master_grad.end(), weight_grads[next_parameter++].begin());
            if (!m.bias.data.empty()) {
                const Tensor bias = network->gradient(l.setup.name, &Node::bias);
                std::copy(bias.data.begin(), bias.data.end(), weight_grads[next_parameter++].begin());
            }
        }
    }

    template <typename F>
    void for_each_set(F f) {
        for (Layer& l : layers)
            for (GateSet* set : {l.weights.get(), l.activations.get()})
                if (set) f(*set);
    }

    GatedStepLoss step(const float* images, const uint8_t* labels, double mu) {
        for_each_set([&](GateSet& s) { s.sample(rng); });
        stage_weights();
        network->forward(images);
        const int64_t classes = network->output_dims().back();
        GatedStepLoss loss;
        loss.cross_entropy =
            softmax_cross_entropy(network->output(), labels, options.batch, classes, diff.data());
        network->backward(diff.data());
        weight_backward();
        loss.regularizer = regularize();
        for_each_set([&](GateSet& s) { s.finish_gradients(mu); });
        if (!std::isfinite(loss.cross_entropy + loss.regularizer))
            throw Failure("bayesian_bits: the loss became " +
                          std::to_string(loss.cross_entropy + mu * loss.regularizer) +
                          "; lower the learning rate");
        logit_optimizer->step(options.gate_lr);
        if (options.grid == GateGrid::bayesian_bits) range_optimizer->step(options.lr);
        for_each_set([](GateSet& s) { s.clamp_ranges(); });
        if (weight_optimizer) weight_optimizer->step(options.weight_lr);
        return loss;
    }

    // The regularizer of the current logits (before mu), its gradient into every set's reg_grad.
    double regularize() {
        double value = 0.0;
        for (Layer& l : layers) {
            if (!l.weights) continue;
            if (options.regularizer == GateRegularizer::bits) {
                value += l.weights->add_bit_regularizer() + l.activations->add_bit_regularizer();
                continue;
            }
            value += add_bitops_regularizer(*l.weights, *l.activations);
        }
        return value;
    }

    // The layer's expected BitOPs (bitops_regularizer), its gradient into both sets' reg_grad.
    static double add_bitops_regularizer(GateSet& weights, GateSet& activations) {
        if (!weights.learns_any() && !activations.learns_any()) return 0.0;
        const LayerBitops r =
            bitops_regularizer(weights.all_logits(), weights.prunable(), activations.unit_logits(0),
                               weights.macs_ratio, weights.levels, activations.levels);
        for (size_t u = 0; u < weights.units; ++u)
            for (size_t k = 0; k < gate_count; ++k) weights.reg_grad[u][k] += r.weight_grad[u][k];
        for (size_t k = 0; k < gate_count; ++k) activations.reg_grad[0][k] += r.activation_grad[k];
        return r.value;
    }

    BitPolicy thresholded_policy() const {
        BitPolicy policy;
        for (const Layer& l : layers) {
            const Node& node = node_named(master, l.setup.name);
            LayerBits bits{l.setup.name, l.setup.fixed.activation_bits,
                           std::vector<int>(static_cast<size_t>(kernel_count(node)),
                                            l.setup.fixed.weight_bits)};
            if (l.weights) {
                const GateSet& g = *l.weights;
                for (size_t k = 0; k < bits.weight_bits.size(); ++k)
                    bits.weight_bits[k] = effective_bits(g.thresholded(g.units == 1 ? 0 : k), g.levels);
            }
            if (l.activations)
                bits.activation_bits =
                    effective_bits(l.activations->thresholded(0), l.activations->levels);
            policy.layers.push_back(std::move(bits));
        }
        return policy;
    }

    double accuracy(const Dataset& data, int64_t limit) {
        for_each_set([](GateSet& s) { s.use_thresholded(); });
        stage_weights();
        return batched_accuracy(data, limit, options.batch, network->output_dims().back(),
                                [&](const float* images) {
                                    network->forward(images);
                                    return network->output();
                                });
    }
};

GatedNetwork::GatedNetwork(const Graph& folded, std::vector<GatedLayer> layers,
                           const Calibration& calibration, const GatedOptions& options)
    : impl_(std::make_unique<Impl>(folded, std::move(layers), calibration, options)) {}

GatedNetwork::~GatedNetwork() = default;

int64_t GatedNetwork::batch() const { return impl_->options.batch; }

GatedStepLoss GatedNetwork::step(const float* images, const uint8_t* labels, double mu) {
    return impl_->step(images, labels, mu);
}

void GatedNetwork::fix_gates() {
    impl_->for_each_set([](GateSet& s) {
        for (size_t u = 0; u < s.units; ++u) {
            const ResidualGates hard = s.thresholded(u);
            for (size_t k = 0; k < gate_count; ++k)
                s.logits[u * gate_count + k] =
                    static_cast<float>(hard[k] != 0.0f ? fixed_open_logit : fixed_closed_logit);
        }
        s.fixed = true;
    });
}

BitPolicy GatedNetwork::thresholded_policy() const { return impl_->thresholded_policy(); }

std::vector<std::vector<double>> GatedNetwork::keep_probabilities() const {
    std::vector<std::vector<double>> result;
    for (const Impl::Layer& l : impl_->layers) {
        std::vector<double> p;
        if (l.weights)
            for (size_t u = 0; u < l.weights->units; ++u)
                p.push_back(probability_on(l.weights->logits[u * gate_count]));
        result.push_back(std::move(p));
    }
    return result;
}

double GatedNetwork::accuracy(const Dataset& data, int64_t limit) {
    return impl_->accuracy(data, limit);
}

const Graph& GatedNetwork::master() const { return impl_->master; }

} // namespace mps
