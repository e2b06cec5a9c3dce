#include "evaluator/engine/evaluate.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>

namespace mps {
namespace {

std::string shape_text(const std::vector<int64_t>& dims) {
    std::string text;
    for (size_t i = 0; i < dims.size(); ++i) {
        if (i) text += 'x';
        text += std::to_string(dims[i]);
    }
    return text;
}

} // namespace

int argmax(const float* logits, int64_t classes) {
    int best = 0;
    for (int64_t c = 1; c < classes; ++c)
        if (logits[c] > logits[best]) best = static_cast<int>(c);
    return best;
}

double cross_entropy(const float* logits, int64_t classes, int label) {
    const double top = *std::max_element(logits, logits + classes);
    double sum = 0.0;
    for (int64_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(logits[c]) - top);
    return top + std::log(sum) - static_cast<double>(logits[label]);
}

double softmax_kl(const float* reference, const float* logits, int64_t classes) {
    auto log_sum_exp = [classes](const float* x) {
        const double top = *std::max_element(x, x + classes);
        double sum = 0.0;
        for (int64_t c = 0; c < classes; ++c) sum += std::exp(static_cast<double>(x[c]) - top);
        return top + std::log(sum);
    };
    const double lse_reference = log_sum_exp(reference), lse_logits = log_sum_exp(logits);
    double kl = 0.0;
    for (int64_t c = 0; c < classes; ++c) {
        const double log_p = static_cast<double>(reference[c]) - lse_reference;
        const double log_q = static_cast<double>(logits[c]) - lse_logits;
        kl += std::exp(log_p) * (log_p - log_q);
    }
    return std::max(0.0, kl);
}

EvalResult evaluate_float(const Graph& graph, const Dataset& data, int64_t batch, int64_t limit,
                          int64_t pass_images) {
    const std::vector<int64_t> data_shape{data.channels, data.height, data.width};
    if (graph.input_shape != data_shape)
        throw Error("model expects input " + shape_text(graph.input_shape) + " but the data has " +
                    shape_text(data_shape) + " images");
    if (batch < 1) throw Error("evaluate: batch size must be at least 1, got " + std::to_string(batch));
    if (pass_images < 1)
        throw Error("evaluate: images per pass must be at least 1, got " + std::to_string(pass_images));
    const int64_t count = limit < 0 ? data.count : std::min(limit, data.count);
    // Batches only bound the passes here: the figures are summed image by image.
    InferenceEngine engine(graph, std::max<int64_t>(1, std::min({batch, pass_images, count})));
    const int64_t classes = engine.num_classes();
    if (count % engine.batch() != 0) engine.prepare(count % engine.batch()); // not timed

    EvalResult result;
    result.images = count;
    result.predictions.reserve(static_cast<size_t>(count));
    double loss_sum = 0.0;
    for (int64_t first = 0; first < count; first += engine.batch()) {
        const int64_t n = std::min(engine.batch(), count - first);
        const auto start = std::chrono::steady_clock::now();
        const float* logits = engine.run(data.image(first), n);
        result.seconds += std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        for (int64_t i = 0; i < n; ++i) {
            const float* row = logits + i * classes;
            const int label = data.labels[static_cast<size_t>(first + i)];
            if (label >= classes)
                throw Error("evaluate: image " + std::to_string(first + i) + " has label " +
                            std::to_string(label) + " but the model has only " +
                            std::to_string(classes) + " classes");
            const int predicted = argmax(row, classes);
            result.predictions.push_back(predicted);
            result.correct += predicted == label;
            loss_sum += cross_entropy(row, classes, label);
        }
    }
    if (count > 0) {
        result.accuracy_percent = 100.0 * static_cast<double>(result.correct) / static_cast<double>(count);
        result.mean_loss = loss_sum / static_cast<double>(count);
    }
    if (result.seconds > 0.0) result.images_per_second = static_cast<double>(count) / result.seconds;
    return result;
}

} // namespace mps
