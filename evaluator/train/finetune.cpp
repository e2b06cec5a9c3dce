#include "evaluator/train/finetune.h"

#include "evaluator/base/error.h"
#include "evaluator/base/seeded_random.h"
#include "evaluator/engine/inference.h"
#include "evaluator/train/optimizer.h"
#include "evaluator/train/trainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <numeric>
#include <random>

namespace mps {

namespace {

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// `folded` after checking that it is what fine-tuning works on.
const Graph& checked(const Graph& folded, const BitPolicy& policy) {
    for (const Node& node : folded.nodes)
        if (node.op == Op::batch_norm)
            throw Error("finetune: node '" + node.name + "' is a batch norm; fine-tuning works "
                        "on the BN-folded graph, fold batch norm first (fold_batch_norm)");
    policy.validate(folded);
    return folded;
}

Node& node_named(Graph& graph, const std::string& name) {
    for (Node& node : graph.nodes)
        if (node.name == name) return node;
    throw Error("finetune: the graph has no node '" + name + "'");
}

std::string shape_text(const Dataset& d) {
    return std::to_string(d.channels) + "x" + std::to_string(d.height) + "x" +
           std::to_string(d.width);
}

void check_images(const Graph& graph, const Dataset& data, const char* what) {
    if (graph.input_shape != std::vector<int64_t>{data.channels, data.height, data.width})
        throw Error(std::string("finetune: the ") + what + " images are " + shape_text(data) +
                    " but the model reads another shape; use a data set that matches the model");
    if (data.count < 1)
        throw Error(std::string("finetune: no ") + what + " images; give at least one");
}

// Top-1 accuracy (percent) of `net` on the first `limit` images of `data` (0 = all).
double accuracy(QatNetwork& net, const Dataset& data, int64_t limit) {
    return batched_accuracy(data, limit, net.batch(), net.num_classes(), [&](const float* images) {
        net.forward(images);
        return net.output();
    });
}

} // namespace

std::vector<ActivationQuantizer> activation_quantizers(const Graph& folded, const BitPolicy& policy,
                                                       const Calibration& calibration) {
    policy.validate(folded);
    std::vector<ActivationQuantizer> result;
    const std::vector<const Node*> layers = quantizable_layers(folded);
    for (size_t l = 0; l < layers.size(); ++l) {
        const std::string& input = layers[l]->inputs.at(0);
        const int bits = policy.layers[l].activation_bits;
        auto u = calibration.is_unsigned.find(input);
        if (u == calibration.is_unsigned.end())
            throw Error("finetune: the calibration knows nothing of value '" + input +
                        "'; calibrate this same (BN-folded) graph");
        ActivationQuantizer q;
        q.layer = layers[l]->name;
        q.bits = bits;
        q.is_signed = !u->second;
        q.range = bits == float_bits ? 0.0f : calibration.range(input, bits);
        result.push_back(q);
    }
    return result;
}

QatNetwork::QatNetwork(const Graph& folded, const BitPolicy& policy,
                       std::shared_ptr<const WeightQuantizer> quantizer,
                       const std::vector<ActivationQuantizer>& activations, int64_t batch,
                       bool input_gradient)
    : master_(checked(folded, policy)), staged_(folded), policy_(policy),
      quantizer_(std::move(quantizer)),
      network_(folded, batch, NetworkMode::training, activations, input_gradient),
      engine_(dnnl::engine::kind::cpu, 0) {
    if (!quantizer_) throw Error("finetune: no weight quantizer given");
    const std::vector<TrainParameter>& inner = network_.parameters();
    gradients_.reserve(inner.size()); // TrainParameters point into these buffers
    for (const TrainParameter& p : inner) {
        Tensor& value = node_named(master_, p.node).*p.field;
        gradients_.emplace_back(value.dims);
        TrainParameter master = p;
        master.value = dnnl::memory(p.plain, engine_, value.data.data());
        master.grad = p.trainable ? dnnl::memory(p.plain, engine_, gradients_.back().data.data())
                                  : dnnl::memory();
        parameters_.push_back(master);
    }
    for (const LayerBits& layer : policy_.layers) {
        Tensor& weight = node_named(master_, layer.name).weight;
        const int64_t size = weight.numel() / weight.dims.at(0);
        for (size_t k = 0; k < layer.weight_bits.size(); ++k) {
            if (layer.weight_bits[k] != 0) continue;
            const float* w = weight.data.data() + static_cast<int64_t>(k) * size;
            pruned_.push_back({&weight, static_cast<int64_t>(k), std::vector<float>(w, w + size)});
        }
    }
}

QatNetwork::~QatNetwork() = default;

void QatNetwork::forward(const float* images) {
    for (size_t n = 0; n < master_.nodes.size(); ++n) {
        const Node& master = master_.nodes[n];
        Node& staged = staged_.nodes[n];
        staged.bias = master.bias;
        if (const LayerBits* bits = policy_.find(master.name))
            staged.weight = quantize_weights(*quantizer_, master.weight, bits->weight_bits);
        else
            staged.weight = master.weight;
    }
    network_.load(staged_);
    network_.forward(images);
}

void QatNetwork::backward(const float* diff_output) {
    network_.backward(diff_output);
    for (size_t i = 0; i < parameters_.size(); ++i) {
        const TrainParameter& p = parameters_[i];
        if (!p.trainable) continue;
        const Tensor g = network_.gradient(p.node, p.field);
        // Copied into the buffer that the parameter's gradient memory points at.
        std::copy(g.data.begin(), g.data.end(), gradients_[i].data.begin());
    }
    // STE: d loss / d master = d loss / d quantized weight (no quantizer clips a weight), except
    // for pruned kernels, whose output does not depend on their master weights.
    for (const PrunedKernel& k : pruned_) {
        for (size_t i = 0; i < parameters_.size(); ++i) {
            if (parameters_[i].data() != k.weight->data.data()) continue;
            const int64_t size = static_cast<int64_t>(k.values.size());
            std::fill_n(gradients_[i].data.begin() + k.kernel * size, size, 0.0f);
        }
    }
}

void QatNetwork::after_update() {
    for (const PrunedKernel& k : pruned_)
        std::copy(k.values.begin(), k.values.end(),
                  k.weight->data.begin() + k.kernel * static_cast<int64_t>(k.values.size()));
}

Tensor QatNetwork::gradient(const std::string& node, Tensor Node::*field) const {
    for (size_t i = 0; i < parameters_.size(); ++i)
        if (parameters_[i].node == node && parameters_[i].field == field) {
            if (!parameters_[i].trainable)
                throw Error("finetune: node '" + node + "': parameter has no gradient");
            return gradients_[i];
        }
    throw Error("finetune: node '" + node + "' has no such parameter");
}

FinetuneResult finetune(Graph& folded, const BitPolicy& policy, const FinetuneData& data,
                        const FinetuneOptions& o) {
    const auto start = Clock::now();
    checked(folded, policy);
    check_images(folded, data.train, "training");
    check_images(folded, data.calibration, "calibration");
    check_images(folded, data.validation, "validation");
    if (o.epochs < 1)
        throw Error("finetune: epochs must be at least 1, got " + std::to_string(o.epochs));
    if (o.batch < 1 || o.batch > data.train.count)
        throw Error("finetune: batch " + std::to_string(o.batch) + " must be between 1 and the " +
                    std::to_string(data.train.count) + " training images");
    if (!(o.lr > 0)) throw Error("finetune: the learning rate must be positive");
    if (!(o.distill_weight >= 0 && o.distill_weight <= 1))
        throw Error("finetune: the distillation weight must be between 0 and 1, got " +
                    std::to_string(o.distill_weight));
    if (!(o.distill_temperature > 0))
        throw Error("finetune: the distillation temperature must be positive, got " +
                    std::to_string(o.distill_temperature));
    const std::shared_ptr<const WeightQuantizer> quantizer =
        make_weight_quantizer(o.weight_quantizer.name, o.weight_quantizer.args);
    const CalibrationMethod method =
        make_calibration(o.calibration_method.name, o.calibration_method.args);
    OptimizerOptions optimizer_options;
    optimizer_options.kind = o.optimizer;
    optimizer_options.momentum = o.momentum;
    optimizer_options.nesterov = o.nesterov;
    optimizer_options.weight_decay = o.weight_decay;

    const Calibration calibration = calibrate(folded, data.calibration, method);
    QatNetwork net(folded, policy, quantizer, activation_quantizers(folded, policy, calibration),
                   o.batch);
    Optimizer optimizer(optimizer_options, net.parameters());
    // The teacher is the float model as it was before fine-tuning.
    std::unique_ptr<InferenceEngine> teacher;
    if (o.distill_weight > 0) teacher = std::make_unique<InferenceEngine>(folded, o.batch);

    const Dataset& train = data.train;
    const int64_t classes = net.num_classes();
    const int64_t image_size = train.image_size();
    const int64_t steps_per_epoch = train.count / o.batch;
    const int64_t total_steps = steps_per_epoch * o.epochs;
    std::mt19937_64 rng(o.seed);
    std::vector<int64_t> order(static_cast<size_t>(train.count));
    std::vector<float> images(static_cast<size_t>(o.batch * image_size));
    std::vector<uint8_t> labels(static_cast<size_t>(o.batch));
    std::vector<float> diff(static_cast<size_t>(o.batch * classes));
    FinetuneResult result;
    int64_t step = 0;
    for (int epoch = 1; epoch <= o.epochs; ++epoch) {
        const auto epoch_start = Clock::now();
        std::iota(order.begin(), order.end(), int64_t{0});
        random_shuffle(rng, order.data(), order.size());
        double loss_sum = 0, lr = o.lr;
        for (int64_t b = 0; b < steps_per_epoch; ++b, ++step) {
#pragma omp parallel for schedule(static)
            for (int64_t i = 0; i < o.batch; ++i) {
                const int64_t index = order[static_cast<size_t>(b * o.batch + i)];
                labels[static_cast<size_t>(i)] = train.labels[static_cast<size_t>(index)];
                std::memcpy(images.data() + i * image_size, train.image(index),
                            static_cast<size_t>(image_size) * sizeof(float));
            }
            net.forward(images.data());
            const double loss =
                teacher ? distillation_loss(net.output(), teacher->run(images.data(), o.batch),
                                            labels.data(), o.batch, classes, o.distill_weight,
                                            o.distill_temperature, diff.data())
                        : softmax_cross_entropy(net.output(), labels.data(), o.batch, classes,
                                                diff.data());
            if (!std::isfinite(loss))
                throw Failure("finetune: the loss became " + std::to_string(loss) + " in epoch " +
                              std::to_string(epoch) + "; lower the learning rate");
            loss_sum += loss;
            net.backward(diff.data());
            lr = scheduled_learning_rate(o.lr, o.cosine, step, total_steps, 0);
            optimizer.step(lr);
            net.after_update();
            if (o.recalibrate_steps > 0 && (step + 1) % o.recalibrate_steps == 0)
                net.set_activation_ranges(activation_quantizers(
                    net.master(), policy, calibrate(net.master(), data.calibration, method)));
        }
        const double train_seconds = seconds_since(epoch_start);
        FinetuneEpoch report;
        report.epoch = epoch;
        report.train_loss = loss_sum / static_cast<double>(steps_per_epoch);
        report.validation_accuracy = accuracy(net, data.validation, o.validation_limit);
        report.images_per_second =
            static_cast<double>(steps_per_epoch * o.batch) / std::max(train_seconds, 1e-9);
        report.seconds = seconds_since(epoch_start);
        report.learning_rate = lr;
        result.epochs.push_back(report);
        if (o.on_epoch) o.on_epoch(report);
    }
    folded = net.master();

    // The evaluator calibrates the saved model afresh: measure what it will see.
    const Calibration final_calibration = calibrate(folded, data.calibration, method);
    QatNetwork final_net(folded, policy, quantizer,
                         activation_quantizers(folded, policy, final_calibration), o.batch);
    result.final_validation_accuracy = accuracy(final_net, data.validation, o.validation_limit);
    result.seconds = seconds_since(start);
    return result;
}

} // namespace mps
