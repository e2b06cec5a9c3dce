#pragma once
// Quantization-aware fine-tuning (QAT) of a BN-folded model under a bit-width policy: the training
// engine (evaluator/train/train_network.h) back-propagates through the evaluator's own quantizers with
// the straight-through estimator (STE). docs/finetune.md has the command and the measurements.
//
// Decisions:
//   - Weights. The float master weights (and biases) are what the optimizer updates. Before each
//     forward, every quantizable layer's weights are quantized per kernel at the policy's bits by
//     the run's weight quantizer (quantize_weights, the code the evaluator uses; 32 bits = float,
//     16 bits = the quantizer's 16-bit grid, as in the evaluator) and loaded into the network.
//     Backward gives the gradient with respect to the quantized weights; the STE applies it to
//     the master weights unchanged. A clip mask would zero it where the quantizer clips, but every
//     registered quantizer's grid spans its whole kernel (uniform: s = max|w| / qmax, so
//     |w / s| <= qmax; uniform_asymmetric: [min, max]; ls and kmeans: no range), so no weight is
//     ever clipped. Pruned kernels (0 bits) compute with zero weights, get a zero gradient and
//     keep their master weights (restored after every update, so weight decay cannot move them).
//   - Activations. The input of every quantizable layer is fake-quantized per tensor at the
//     layer's activation bits (32 = none) with the calibrated range, by a fake-quant layer of the
//     training engine (ActivationQuantizer): forward the evaluator's fake_quantize_activation,
//     backward the STE with the clip mask. Ranges are calibrated (calibrate(), the policy's rule)
//     on the calibration images with the model's weights at the start and stay fixed while
//     training; at the end they are calibrated again on the tuned weights, which is what the
//     ordinary Evaluator does with the saved model, so the final figures are the evaluator's.
//   - Loop: like train() (trainer.h) with warmup_epochs = 0 and no augmentation: per epoch a
//     std::mt19937_64(seed) Fisher-Yates shuffle of the train set, full batches, softmax
//     cross-entropy (or the distillation loss against the float model), one Optimizer (optimizer.h) step per batch, learning rate cosine-decayed
//     from lr to 0 over all steps (or constant). A policy of 32 bits everywhere therefore gives
//     bit-identical weights to train() with the same options (tested).
//   - The graph must be BN-folded (no batch_norm nodes): quantization applies to the folded
//     weights, as in the evaluator.
#include "evaluator/data/dataset.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/quant/quantizer.h"
#include "evaluator/train/train_network.h"

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

namespace mps {

// The activation quantizer of every quantizable layer of `folded` under `policy`: its input
// value's calibrated range at the layer's activation bits and the value's signedness.
std::vector<ActivationQuantizer> activation_quantizers(const Graph& folded, const BitPolicy& policy,
                                                       const Calibration& calibration);

// A TrainNetwork of a BN-folded graph under a policy, with float master parameters (the STE).
class QatNetwork {
public:
    // `folded`: shapes inferred, no batch_norm nodes; `policy` must validate against it
    // (mps::Error otherwise). `activations` as from activation_quantizers().
    QatNetwork(const Graph& folded, const BitPolicy& policy,
               std::shared_ptr<const WeightQuantizer> quantizer,
               const std::vector<ActivationQuantizer>& activations, int64_t batch,
               bool input_gradient = false);
    ~QatNetwork();
    QatNetwork(const QatNetwork&) = delete;
    QatNetwork& operator=(const QatNetwork&) = delete;

    int64_t batch() const { return network_.batch(); }
    int64_t num_classes() const { return network_.output_dims().back(); }

    // Quantizes the master weights into the network, then runs it on `batch` images (NCHW).
    void forward(const float* images);
    const float* output() const { return network_.output(); }
    // Back-propagates and sets the master parameters' gradients (STE; pruned kernels: 0).
    void backward(const float* diff_output);
    // Gradient with respect to the input images of the last backward (built with input_gradient).
    const float* input_gradient() const { return network_.input_gradient(); }

    // The master parameters in the graph's plain layouts (OIHW / [out, in] / [C]) with their
    // gradients: what an Optimizer updates. Call after_update() after each update.
    std::vector<TrainParameter>& parameters() { return parameters_; }
    // Restores the master weights of pruned kernels.
    void after_update();
    // A master parameter's gradient of the last backward (plain layout).
    Tensor gradient(const std::string& node, Tensor Node::*field) const;
    // The graph with the master parameters.
    const Graph& master() const { return master_; }
    // New activation ranges (TrainNetwork::set_activation_ranges), e.g. re-calibrated ones.
    void set_activation_ranges(const std::vector<ActivationQuantizer>& activations) {
        network_.set_activation_ranges(activations);
    }

private:
    struct PrunedKernel {
        Tensor* weight;
        int64_t kernel;
        std::vector<float> values;
    };

    Graph master_;
    Graph staged_; // master_ with quantized weights: what the network computes with
    BitPolicy policy_;
    std::shared_ptr<const WeightQuantizer> quantizer_;
    TrainNetwork network_;
    dnnl::engine engine_;
    std::vector<Tensor> gradients_; // one per parameter
    std::vector<TrainParameter> parameters_;
    std::vector<PrunedKernel> pruned_;
};

struct FinetuneEpoch {
    int epoch = 0;                  // 1-based
    double train_loss = 0;          // mean loss over the epoch's batches (with distillation: its loss)
    double validation_accuracy = 0; // percent, QAT network with the ranges fixed at the start
    double images_per_second = 0;   // training throughput (forward + backward + update)
    double seconds = 0;             // wall time of the epoch including validation
    double learning_rate = 0;       // at the epoch's last step
};

struct FinetuneOptions {
    int epochs = 1;
    int64_t batch = 64;
    std::string optimizer = "adam"; // "adam" or "sgd" (optimizer.h)
    double lr = 1e-3;
    double momentum = 0.9;          // sgd
    bool nesterov = true;           // sgd
    double weight_decay = 0.0;
    bool cosine = true;             // cosine decay to 0, else constant lr
    uint64_t seed = 1;
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}};
    QuantizerSpec calibration_method{default_calibration_rule, {}};
    int64_t validation_limit = 0;   // score only the first N validation images (0 = all)
    // Re-calibrate the activation ranges from the master weights every this many steps (0:
    // never), so that training sees the ranges the evaluator will calibrate for the final weights.
    int64_t recalibrate_steps = 100;
    // Knowledge distillation from the float model it starts from (the teacher, run by the
    // InferenceEngine on each batch): the loss is distillation_loss (trainer.h) with this weight
    // of the soft term and temperature; weight 0 trains on the labels alone. On by default: on
    // resnet8 W4A4 it gave +0.25 and +0.07 points of test accuracy over labels alone
    // (docs/finetune.md).
    double distill_weight = 1.0;
    double distill_temperature = 1.0;
    std::function<void(const FinetuneEpoch&)> on_epoch;
};

// The images fine-tuning reads: it trains on `train`, calibrates on `calibration`, reports
// accuracy on `validation` after each epoch.
struct FinetuneData {
    Dataset train;
    Dataset calibration;
    Dataset validation;
};

struct FinetuneResult {
    std::vector<FinetuneEpoch> epochs;
    // Validation accuracy (percent) of the tuned weights with re-calibrated ranges on the fake
    // path: what the Evaluator measures on the saved model (its integer path agrees within
    // 0.05 points).
    double final_validation_accuracy = 0;
    double seconds = 0; // the whole fine-tuning, calibrations included
};

// Fine-tunes the master weights of `folded` (BN-folded, shapes inferred) in place under `policy`.
// Throws mps::Error for bad input: batch_norm nodes ("fold batch norm first"), a policy that does
// not match the graph, unknown quantizers, epochs < 1, a batch outside [1, train images], a
// learning rate <= 0, a distillation weight outside [0, 1] or temperature <= 0, images that do not
// match the model; and when the loss stops being finite.
FinetuneResult finetune(Graph& folded, const BitPolicy& policy, const FinetuneData& data,
                        const FinetuneOptions& options);

} // namespace mps
