#pragma once
// GatedNetwork: Bayesian Bits training of a BN-folded model (docs/policies.md, "bayesian_bits";
// van Baalen et al., NeurIPS 2020). Every learned quantizable layer has
//   - weights: the nested residual quantizer (residual_quantizer.h) on a learned symmetric range
//     [-a, a], with one gate vector z_2 .. z_32 and one range per gated unit: per output channel
//     (kernel granularity, ours) or per layer (the paper's granularity, no pruning);
//   - input activations: one residual quantizer per layer on a learned range ([0, a] when the
//     value is non-negative by construction, else [-a, a]); z_2 is never learned (no pruning).
// Pinned layers keep fixed bits: weights through the run's weight quantizer, activations through
// the ordinary calibrated fake quantization, both with the straight-through estimator.
//
// A training step (step()):
//   1. samples every learned gate from its hard-concrete distribution (hard_concrete.h) with the
//      network's own std::mt19937_64(seed);
//   2. quantizes the master weights per unit and runs the TrainNetwork forward (the activation
//      quantizers are ActivationHooks of the fake-quant layers);
//   3. loss = softmax cross-entropy + mu * R, R the sum over learned quantizers of R_q,
//      with c_b = (MACs_l / MACs_max) * b (bit_regularizer), or the expected BitOPs
//      (GateRegularizer);
//   4. backward: dL/dz from the residual quantizers, times dz/dlog_alpha of the sample, plus
//      mu * dR/dlog_alpha; dL/da of every range (STE); in train_weights mode dL/dw of the master
//      weights and biases (STE: d x_q / d w = z_2 inside the range, 0 outside). With GateGrid::run
//      the levels are the run's quantizers (dL/dz from their residuals, the same nested form),
//      ranges are not learned, and d x_q / d x = sum_k weight_k * (x not clipped at level k);
//   5. one Adam step (optimizer.h) for the gate logits (gate_lr), the ranges (lr) and, when
//      training weights, the master weights and biases (weight_lr). Ranges stay above a floor.
// Gates whose level cannot be chosen (GateState::open / closed) are fixed and not learned.
// After fix_gates() every gate is its thresholded value (q(z = 0) < 0.34, chains closed above the
// first closed gate) and steps train only ranges and weights: the finetune mode's second phase.
//
// Deterministic: the same graph, data order, options and OpenMP thread count give the same
// result; the host-side reductions sum fixed chunks in a fixed order.
#include "evaluator/data/dataset.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/quantizer.h"
#include "evaluator/quant/residual_quantizer.h"
#include "policies/bayesian_bits/hard_concrete.h"

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

namespace mps {

// What happens to one residual gate of a quantizer.
enum class GateState : uint8_t { open, learned, closed };
using GateStates = std::array<GateState, residual_gate_count>;

// The gates for a quantizer whose bit-width must come from `allowed` (descending, distinct; a 0
// means pruning is allowed), on a chain of `levels`: levels above the largest allowed bit-width
// are closed; levels up to the smallest level >= the smallest non-zero allowed bit-width are
// open, except z_2 when 0 is allowed (then learned); the levels between are learned. Throws
// mps::Error when `allowed` has no non-zero entry.
GateStates gate_states(std::span<const int> allowed, const GateLevels& levels = residual_bits);
// The chain of GateGrid::run for `allowed` (descending or not; 0 ignored): the allowed non-zero
// bit-widths ascending, padded above with the smallest bit-widths of {2..8, 16, 32} beyond the
// largest (gate_states closes those). Throws mps::Error for more than 5 non-zero bit-widths or
// none, or when no padding is left above the largest.
GateLevels run_levels(std::span<const int> allowed);
// The bits of `learned` (a gate chain's effective bits, 0 .. 32) as the allowed bit-width to use:
// `learned` itself when allowed, else the smallest allowed one above it, else the largest allowed.
int nearest_allowed_bits(int learned, std::span<const int> allowed);

struct GatedLayer {
    std::string name;          // a conv / fully connected node of the graph
    bool learned = true;       // false: pinned at `fixed`
    UniformBits fixed;         // the pinned bits (when not learned)
    GateStates weight_gates{}; // when learned
    GateStates activation_gates{};
    // The chains' levels: residual_bits for GateGrid::bayesian_bits (required); any ascending
    // bit-widths of {1..8, 16, 32} for GateGrid::run (run_levels).
    GateLevels weight_levels = residual_bits;
    GateLevels activation_levels = residual_bits;
};

// The cost the gates are regularized with:
//   bits:   R_q = sum over quantizers of (MACs_l / MACs_max) * sum_k b_k P_k, weight
//           and activation quantizers added (bit_regularizer);
//   bitops: sum over learned layers of (MACs_l / MACs_max) * W_l * A_l / 8, the expected BitOPs
//           (W_l: mean expected weight bits over the layer's units, A_l: expected activation
//           bits; expected_bits). Weight bits are then as dear as the activation bits they meet.
enum class GateRegularizer : uint8_t { bits, bitops };

// The levels the gates choose between:
//   bayesian_bits: the paper's nested residual quantizer on learned ranges (max|w| per unit and the
//                  calibrated activation max to start);
//   run:           the run's own quantizers at each level's bit-width (GatedLayer's levels,
//                  e.g. run_levels of the space), ranges not learned: the weight quantizer of
//                  `weight_quantizer` (32: float) and fake_quantize_activation with the
//                  calibration's range at each bit-width, in the same telescoped form
//                  (run_grid.h). Thresholded, the network is then the one the evaluator's
//                  fake-quant path scores for the thresholded policy.
enum class GateGrid : uint8_t { bayesian_bits, run };

struct GatedOptions {
    bool per_kernel = true;      // gates and ranges per output channel, else per layer
    bool train_weights = false;  // finetune mode: weights and biases trained too
    int64_t batch = 64;
    double lr = 1e-3;            // Adam, ranges
    double gate_lr = 1e-3;       // Adam, gate logits
    double weight_lr = 1e-3;     // Adam, weights and biases (train_weights)
    uint64_t seed = 1;           // gate samples
    GateRegularizer regularizer = GateRegularizer::bits;
    GateGrid grid = GateGrid::bayesian_bits;
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}}; // pinned layers; grid `run`
};

struct GatedStepLoss {
    double cross_entropy = 0.0;
    double regularizer = 0.0; // R (before mu)
};

class GatedNetwork {
public:
    // `folded`: BN-folded, shapes inferred. `layers`: one entry per quantizable layer, in graph
    // order. `calibration`: of this graph; it gives the initial activation ranges (max rule) and
    // the pinned layers' ranges. Throws mps::Error for a mismatch.
    GatedNetwork(const Graph& folded, std::vector<GatedLayer> layers,
                 const Calibration& calibration, const GatedOptions& options);
    ~GatedNetwork();
    GatedNetwork(const GatedNetwork&) = delete;
    GatedNetwork& operator=(const GatedNetwork&) = delete;

    int64_t batch() const;
    // One training step on batch() images (NCHW) and labels. Throws mps::Error when the loss is
    // not finite.
    GatedStepLoss step(const float* images, const uint8_t* labels, double mu);
    // Thresholds every learned gate and keeps it fixed from now on.
    void fix_gates();

    // The thresholded bits: learned layers with their effective bits in {0, 2, 4, 8, 16, 32},
    // pinned layers at their pins. Not yet mapped into a search space.
    BitPolicy thresholded_policy() const;
    // q(z_2 > 0) of every weight unit of every layer (empty for pinned layers): how strongly
    // each kernel (or layer) is kept rather than pruned.
    std::vector<std::vector<double>> keep_probabilities() const;
    // Top-1 accuracy (percent) of the thresholded gates with the learned ranges on the first
    // `limit` images of `data` (0: all): the Bayesian Bits grid's own figure.
    double accuracy(const Dataset& data, int64_t limit = 0);
    // The graph with the current master weights (changed only with train_weights).
    const Graph& master() const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

} // namespace mps
