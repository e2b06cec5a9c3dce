#pragma once
// Optimizer: SGD (momentum, optionally Nesterov) or Adam over the trainable parameters of a
// TrainNetwork, with PyTorch semantics. One implementation for the model trainer and the search
// policies' small networks (e.g. the DDPG agents of policies/autoq/).
//
//   sgd:  v = momentum * v + g, w -= lr * (nesterov ? g + momentum * v : v)
//   adam: beta1 0.9, beta2 0.999, eps 1e-8, bias-corrected moments
// Weight decay is L2 added to the gradient of the parameters marked `decay` (conv and fully
// connected weights; not biases, not batch norm scale/shift). Parameters not `trainable` are left
// alone. Updates are element-wise in float32, so the result does not depend on the thread count.
#include "evaluator/train/train_network.h"

#include <cstdint>
#include <string>
#include <vector>

namespace mps {

struct OptimizerOptions {
    std::string kind = "sgd"; // "sgd" or "adam"
    double momentum = 0.9;    // sgd only
    bool nesterov = true;     // sgd only
    double weight_decay = 0.0;
};

class Optimizer {
public:
    // Keeps a reference to `params` (the network must outlive the optimizer). Throws mps::Error
    // for an unknown kind.
    Optimizer(OptimizerOptions options, std::vector<TrainParameter>& params);

    // One update of every trainable parameter from the gradients of the last backward.
    void step(double lr);
    int64_t steps() const { return steps_; }

private:
    // Per parameter: SGD uses `first` as velocity, Adam both moments.
    struct Slot {
        std::vector<float> first, second;
    };

    void sgd(const TrainParameter& p, Slot& s, float lr) const;
    void adam(const TrainParameter& p, Slot& s, double lr) const;

    OptimizerOptions options_;
    std::vector<TrainParameter>& params_;
    std::vector<Slot> slots_;
    int64_t steps_ = 0;
};

// The learning rate of step `t` (0-based) out of `total`: a linear warm-up from peak / warmup to
// `peak` over the first `warmup` steps, then cosine decay towards 0 at step `total` (or constant
// `peak` when `cosine` is false).
double scheduled_learning_rate(double peak, bool cosine, int64_t t, int64_t total, int64_t warmup);

} // namespace mps
