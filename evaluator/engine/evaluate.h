#pragma once
// Float32 evaluation of a model on a data set: top-1 accuracy, mean cross-entropy and speed.
#include "evaluator/data/dataset.h"
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <vector>

namespace mps {

struct EvalResult {
    double accuracy_percent = 0.0; // top-1, argmax of the logits with the first index on ties
    double mean_loss = 0.0;        // mean cross-entropy of softmax(logits) against the labels
    int64_t images = 0;
    int64_t correct = 0;
    double seconds = 0.0;          // forward passes only (steady_clock), not setup or scoring
    double images_per_second = 0.0;
    std::vector<int> predictions;  // one per image
};

// Images per network pass of the evaluation paths: a batch runs as passes of at most this many
// images, whose activations stay in the CPU's caches (docs/evaluator.md, "Passes").
constexpr int64_t default_pass_images = 32;

// Evaluates the first `limit` images of `data` (all when limit < 0) with the oneDNN float32
// engine in batches of `batch`, each run as passes of at most `pass_images` images (the figures
// are summed image by image, so neither changes them beyond oneDNN's float rounding). Throws
// mps::Error when the graph's input shape differs from the data's image shape or a label is
// outside the graph's classes.
EvalResult evaluate_float(const Graph& graph, const Dataset& data, int64_t batch = 256,
                          int64_t limit = -1, int64_t pass_images = default_pass_images);

// Scoring helpers shared with the other evaluation paths.
// Index of the largest logit, the first one on ties.
int argmax(const float* logits, int64_t classes);
// -log softmax(logits)[label], computed with a stable log-sum-exp.
double cross_entropy(const float* logits, int64_t classes, int label);
// KL(softmax(reference) || softmax(logits)), with stable log-softmaxes; >= 0, 0 when equal.
double softmax_kl(const float* reference, const float* logits, int64_t classes);

} // namespace mps
