#include "evaluator/train/trainer.h"

#include "evaluator/base/error.h"
#include "evaluator/base/seeded_random.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/train/optimizer.h"
#include "evaluator/train/train_network.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <numeric>
#include <random>
#include <vector>

namespace mps {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

void check_data(const Graph& graph, const Dataset& data, const char* what) {
    const std::vector<int64_t> shape{data.channels, data.height, data.width};
    if (graph.input_shape != shape)
        throw Error(std::string("trainer: the ") + what + " images are " +
                    std::to_string(data.channels) + "x" + std::to_string(data.height) + "x" +
                    std::to_string(data.width) + " but the graph reads " +
                    std::to_string(graph.input_shape.size() == 3 ? graph.input_shape[0] : 0) +
                    "x...; use a data set that matches the model");
}

// Fashion-MNIST's normalized black: what a shifted image shows where it has no pixels.
constexpr float background = (0.0f - 0.2860f) / 0.3530f;

struct Augment {
    int dy = 0, dx = 0;
    bool flip = false;
};

// Copies image `src` into `dst`, shifted by (dy, dx) and optionally mirrored.
void copy_augmented(const float* src, float* dst, int64_t channels, int64_t h, int64_t w,
                    const Augment& a) {
    for (int64_t c = 0; c < channels; ++c)
        for (int64_t y = 0; y < h; ++y)
            for (int64_t x = 0; x < w; ++x) {
                const int64_t sy = y + a.dy;
                const int64_t sx0 = x + a.dx;
                const int64_t sx = a.flip ? w - 1 - sx0 : sx0;
                const bool inside = sy >= 0 && sy < h && sx0 >= 0 && sx0 < w;
                dst[(c * h + y) * w + x] = inside ? src[(c * h + sy) * w + sx] : background;
            }
}

} // namespace

double softmax_cross_entropy(const float* logits, const uint8_t* labels, int64_t n,
                             int64_t classes, float* diff) {
    double loss = 0;
    for (int64_t i = 0; i < n; ++i) {
        const float* z = logits + i * classes;
        float* d = diff + i * classes;
        const float zmax = *std::max_element(z, z + classes);
        double sum = 0;
        for (int64_t k = 0; k < classes; ++k) sum += std::exp(static_cast<double>(z[k] - zmax));
        const int64_t label = labels[i];
        loss += std::log(sum) - static_cast<double>(z[label] - zmax);
        for (int64_t k = 0; k < classes; ++k) {
            const double p = std::exp(static_cast<double>(z[k] - zmax)) / sum;
            d[k] = static_cast<float>((p - (k == label ? 1.0 : 0.0)) / static_cast<double>(n));
        }
    }
    return loss / static_cast<double>(n);
}

namespace {

// log softmax(z / temperature) of one row, in double (no underflow to log 0).
void tempered_log_softmax(const float* z, int64_t classes, double temperature, double* log_p) {
    const double zmax = *std::max_element(z, z + classes);
    double sum = 0;
    for (int64_t k = 0; k < classes; ++k) sum += std::exp((z[k] - zmax) / temperature);
    const double log_sum = std::log(sum);
    for (int64_t k = 0; k < classes; ++k) log_p[k] = (z[k] - zmax) / temperature - log_sum;
}

} // namespace

double distillation_loss(const float* logits, const float* teacher_logits, const uint8_t* labels,
                         int64_t n, int64_t classes, double weight, double temperature,
                         float* diff) {
    const double hard = softmax_cross_entropy(logits, labels, n, classes, diff);
    if (weight == 0) return hard;
    const double t = temperature;
    std::vector<double> log_p(static_cast<size_t>(classes)), log_q(log_p);
    double soft = 0;
    for (int64_t i = 0; i < n; ++i) {
        tempered_log_softmax(logits + i * classes, classes, t, log_p.data());
        tempered_log_softmax(teacher_logits + i * classes, classes, t, log_q.data());
        float* d = diff + i * classes;
        for (int64_t k = 0; k < classes; ++k) {
            const double p = std::exp(log_p[k]), q = std::exp(log_q[k]);
            soft += q * (log_q[k] - log_p[k]);
            d[k] = static_cast<float>((1 - weight) * d[k] +
                                      weight * t * (p - q) / static_cast<double>(n));
        }
    }
    return (1 - weight) * hard + weight * t * t * soft / static_cast<double>(n);
}

void train(Graph& graph, const Dataset& train, const Dataset& validation,
           const TrainOptions& o) {
    check_data(graph, train, "training");
    check_data(graph, validation, "validation");
    if (o.epochs < 1) throw Error("trainer: epochs must be positive");
    if (o.batch < 1 || o.batch > train.count)
        throw Error("trainer: batch " + std::to_string(o.batch) + " must be between 1 and the " +
                    std::to_string(train.count) + " training images");
    if (!(o.lr > 0)) throw Error("trainer: the learning rate must be positive");

    TrainNetwork net(graph, o.batch, NetworkMode::training);
    Optimizer optimizer({o.optimizer, o.momentum, o.nesterov, o.weight_decay}, net.parameters());
    const int64_t classes = net.output_dims().back();
    const int64_t image_size = train.image_size();
    const int64_t steps_per_epoch = train.count / o.batch;
    const int64_t total_steps = steps_per_epoch * o.epochs;
    const int64_t warmup = std::min<int64_t>(
        total_steps, static_cast<int64_t>(std::llround(o.warmup_epochs * steps_per_epoch)));

    std::mt19937_64 rng(o.seed);
    std::vector<int64_t> order(static_cast<size_t>(train.count));
    std::vector<float> images(static_cast<size_t>(o.batch * image_size));
    std::vector<uint8_t> labels(static_cast<size_t>(o.batch));
    std::vector<float> diff(static_cast<size_t>(o.batch * classes));
    std::vector<Augment> augments(static_cast<size_t>(o.batch));
    int64_t step = 0;

    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        const auto start = Clock::now();
        std::iota(order.begin(), order.end(), int64_t{0});
        random_shuffle(rng, order.data(), order.size());
        double loss_sum = 0;
        double lr = o.lr;
        for (int64_t b = 0; b < steps_per_epoch; ++b, ++step) {
            // Draw augmentation choices sequentially (deterministic), copy in parallel.
            for (Augment& a : augments) {
                if (!o.augment) break;
                a.dy = static_cast<int>(random_index(rng, 5)) - 2;
                a.dx = static_cast<int>(random_index(rng, 5)) - 2;
                a.flip = random_index(rng, 2) == 1;
            }
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < o.batch; ++i) {
                const int64_t index = order[static_cast<size_t>(b * o.batch + i)];
                labels[static_cast<size_t>(i)] = train.labels[static_cast<size_t>(index)];
                copy_augmented(train.image(index), images.data() + i * image_size,
                               train.channels, train.height, train.width,
                               augments[static_cast<size_t>(i)]);
            }
            net.forward(images.data());
            const double loss =
                softmax_cross_entropy(net.output(), labels.data(), o.batch, classes, diff.data());
            if (!std::isfinite(loss))
                throw Failure("trainer: the loss became " + std::to_string(loss) + " in epoch " +
                              std::to_string(epoch) + "; lower the learning rate");
            loss_sum += loss;
            net.backward(diff.data());
            lr = scheduled_learning_rate(o.lr, o.cosine, step, total_steps, warmup);
            optimizer.step(lr);
        }
        const double train_seconds = seconds_since(start);
        net.store(graph);
        EpochReport report;
        report.epoch = epoch;
        report.train_loss = loss_sum / static_cast<double>(steps_per_epoch);
        report.validation_accuracy =
            evaluate_float(graph, validation, 500, o.validation_limit > 0 ? o.validation_limit : -1)
                .accuracy_percent;
        report.images_per_second =
            static_cast<double>(steps_per_epoch * o.batch) / std::max(train_seconds, 1e-9);
        report.seconds = seconds_since(start);
        report.learning_rate = lr;
        if (o.on_epoch) o.on_epoch(report);
    }
}

double batched_accuracy(const Dataset& data, int64_t limit, int64_t batch, int64_t classes,
                        const std::function<const float*(const float*)>& forward) {
    const int64_t count = limit > 0 ? std::min(limit, data.count) : data.count;
    const int64_t size = data.image_size();
    std::vector<float> images(static_cast<size_t>(batch * size), 0.0f);
    int64_t correct = 0;
    for (int64_t first = 0; first < count; first += batch) {
        const int64_t n = std::min(batch, count - first);
        std::copy(data.image(first), data.image(first) + n * size, images.begin());
        std::fill(images.begin() + n * size, images.end(), 0.0f);
        const float* logits = forward(images.data());
        for (int64_t i = 0; i < n; ++i) {
            const float* z = logits + i * classes;
            const int64_t predicted = std::max_element(z, z + classes) - z;
            correct += predicted == data.labels[static_cast<size_t>(first + i)];
        }
    }
    return count > 0 ? 100.0 * static_cast<double>(correct) / static_cast<double>(count) : 0.0;
}

} // namespace mps
