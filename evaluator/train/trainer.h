#pragma once
// Training of a Graph (with batch_norm nodes) on a Dataset, all compute on oneDNN primitives
// (evaluator/train/train_network.h), softmax cross-entropy loss.
//
// Per epoch: the train set is shuffled (std::mt19937_64(seed) and our own Fisher-Yates, so the
// order is the same with every standard library), split into full batches (the last
// train.count % batch images of the shuffled order sit that epoch out), each batch optionally
// augmented (random shift by up to 2 pixels with background fill, horizontal flip), then one
// optimizer step per batch. After each epoch the validation accuracy is measured in inference mode
// (batch norm with its running statistics) and reported through on_epoch.
//
// Optimizers (PyTorch semantics): "sgd": v = momentum * v + g, w -= lr * (nesterov ? g +
// momentum * v : v); "adam": beta1 0.9, beta2 0.999, eps 1e-8. Weight decay is L2 added to the
// gradient of conv and fully connected weights only (not biases, not batch norm scale/shift).
// Learning rate per step: linear warm-up from lr / warmup_steps to lr over warmup_epochs, then
// cosine decay to 0 at the last step (or constant lr when cosine is false).
//
// Training is deterministic: the same graph, data, options and thread count give bit-identical
// weights.
#include "evaluator/data/dataset.h"
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <functional>
#include <string>

namespace mps {

struct EpochReport {
    int epoch = 0;                    // 1-based
    double train_loss = 0;            // mean cross-entropy over the epoch's batches
    double validation_accuracy = 0;   // percent, inference mode
    double images_per_second = 0;     // training throughput (forward + backward + update)
    double seconds = 0;               // wall time of the epoch including validation
    double learning_rate = 0;         // at the epoch's last step
};

struct TrainOptions {
    int epochs = 10;
    int64_t batch = 128;
    std::string optimizer = "sgd"; // "sgd" or "adam"
    double lr = 0.05;
    double momentum = 0.9;
    bool nesterov = true;
    double weight_decay = 5e-4;
    uint64_t seed = 1;
    bool cosine = true;
    double warmup_epochs = 0.5;
    bool augment = false;
    int64_t validation_limit = 0; // score only the first N validation images (0 = all)
    std::function<void(const EpochReport&)> on_epoch;
};

// Trains `graph` in place: its conv / fully connected / batch_norm parameters and batch_norm
// running statistics are updated. Throws mps::Error on bad options (unknown optimizer, batch
// larger than the train set, data that does not match the graph's input shape) and when the loss
// stops being finite ("lower the learning rate").
void train(Graph& graph, const Dataset& train, const Dataset& validation,
           const TrainOptions& options);

// Mean softmax cross-entropy of `n` rows of `classes` logits against `labels`; writes its
// gradient with respect to the logits, (softmax - onehot) / n, into `diff` (n * classes floats).
double softmax_cross_entropy(const float* logits, const uint8_t* labels, int64_t n,
                             int64_t classes, float* diff);

// Knowledge distillation (Hinton et al. 2015): the mean over `n` rows of
//   (1 - weight) * CE(softmax(z), label) + weight * T^2 * KL(softmax(t / T) || softmax(z / T))
// for student logits z, teacher logits t and temperature T > 0, weight in [0, 1]. The T^2 keeps
// the soft term's gradient, weight * T * (softmax(z / T) - softmax(t / T)) / n, on the scale of
// the hard term's. Writes the gradient with respect to z into `diff`; weight 0 is
// softmax_cross_entropy exactly.
double distillation_loss(const float* logits, const float* teacher_logits, const uint8_t* labels,
                         int64_t n, int64_t classes, double weight, double temperature,
                         float* diff);

// Top-1 accuracy (percent; argmax, first index on ties) of a network with a fixed batch size on
// the first `limit` images of `data` (0 = all). `forward` runs `batch` images (NCHW; the last
// batch padded with zero images, whose predictions are not counted) and returns their logits,
// batch x classes.
double batched_accuracy(const Dataset& data, int64_t limit, int64_t batch, int64_t classes,
                        const std::function<const float*(const float*)>& forward);

} // namespace mps
