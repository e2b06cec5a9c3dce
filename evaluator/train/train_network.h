#pragma once
// TrainNetwork: a Graph (with or without batch_norm nodes) compiled into oneDNN primitives for one
// fixed batch size, able to run forward and, in training mode, backward.
//
// Layouts: convolutions, batch norms, poolings and eltwise ops let oneDNN choose (format_tag::any),
// so activations stay in blocked layouts (e.g. nChw16c) from layer to layer. Reorders happen only
// at the input (plain NCHW images), at flatten (to the plain [N, C*H*W] a fully connected layer
// reads) and where a primitive chose a different weight-gradient layout than its weights.
// Parameters live in the layout their forward primitive wants; load() and store() convert to and
// from the graph's plain OIHW / [out, in] tensors.
//
// Semantics per op (forward in training mode):
//   conv, fully_connected, relu, clip, max_pool, average_pool, global_average_pool, add, flatten:
//     as in evaluator/ref/reference.h;
//   batch_norm: normalizes with the batch's statistics over N*H*W (biased variance) and afterwards
//     updates the running statistics like PyTorch: mean = 0.9 mean + 0.1 batch_mean,
//     var = 0.9 var + 0.1 batch_var * m / (m - 1), m = N*H*W.
// In inference mode batch_norm uses the running statistics and no backward exists.
//
// backward(diff_output) computes the gradient of every trainable parameter (overwriting the
// previous one) for the loss whose gradient with respect to the graph output is `diff_output`.
// A value read by several nodes receives the sum of their gradients.
//
// Activation fake quantization (quantization-aware training, evaluator/train/finetune.h): for each
// ActivationQuantizer with bits < 32, a fake-quant layer is inserted just before its conv /
// fully connected layer. It writes a new value (the float input stays what every other reader,
// e.g. a residual add, sees) that the layer reads instead: forward fake_quantize_activation
// (activation_range.h), backward the straight-through estimator with the clip mask (gradient
// passed where the quantizer did not clip, 0 elsewhere; train_layers.h has the exact rule).
// Layers that read the same value at the same bits and range share one fake-quant layer: a tensor
// is quantized once per distinct bit-width (docs/semantics.md, "Activations"). Weights are not
// touched here: the caller loads quantized weights (load()) and owns the float master copy.
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace mps {

enum class NetworkMode { training, inference };

// One parameter array of one node, in the layout of its primitive. Trainable parameters are conv
// and fully connected weights and biases and batch norm scale and shift; running means and
// variances are state (not trainable) but load and store the same way.
struct TrainParameter {
    std::string node;
    Tensor Node::*field = nullptr; // where it lives in the graph: &Node::weight, &Node::bias, ...
    bool trainable = true;
    bool decay = false;            // weight decay applies (conv and fully connected weights)
    dnnl::memory value;
    dnnl::memory grad;             // same descriptor as value; empty when not trainable
    dnnl::memory::desc plain;      // the graph's layout (OIHW, goihw, [out, in], [C])

    float* data() const { return static_cast<float*>(value.get_data_handle()); }
    float* grad_data() const { return static_cast<float*>(grad.get_data_handle()); }
    // Number of floats in `value` including any zero padding of a blocked layout.
    size_t size() const { return value.get_desc().get_size() / sizeof(float); }
};

// A fake-quant layer's elementwise work supplied by the caller instead of the fixed uniform
// fake quantization: Bayesian Bits' gated residual quantizer (policies/bayesian_bits/gated_network.h), whose
// gates and range are learned. Called on the host once the stream has finished everything before,
// with the whole tensor in its (possibly blocked) layout; `inside` marks the logical elements
// (nullptr: all are), the others are layout padding, whose y and dx must be 0 and which must not
// enter any statistics or gradient.
class ActivationHook {
public:
    virtual ~ActivationHook() = default;
    virtual void forward(const float* x, float* y, int64_t n, const uint8_t* inside) = 0;
    // dx = dL/dx from dy = dL/dy at the x of the last forward; may accumulate the hook's own
    // parameter gradients.
    virtual void backward(const float* x, const float* dy, float* dx, int64_t n,
                          const uint8_t* inside) = 0;
};

// The input of conv / fully connected node `layer` fake-quantized per tensor at `bits` (1..8, 16;
// 32 = float, nothing inserted) with the calibrated `range` (max, or max|x| when signed).
// With a `hook`, the layer runs the hook instead (bits must then be below 32; range unused);
// layers share a fake-quant layer only when they read one value through the same hook.
struct ActivationQuantizer {
    std::string layer;
    int bits = float_bits;
    float range = 0.0f;
    bool is_signed = true;
    std::shared_ptr<ActivationHook> hook;
};

struct TrainLayer;
struct TrainBuild;

class TrainNetwork {
public:
    // Throws mps::Error naming the node when a node cannot be compiled (unsupported shapes, a
    // fully connected layer fed a non-flattened value, ...). `input_gradient` also computes the
    // gradient with respect to the input images (for tests).
    TrainNetwork(const Graph& graph, int64_t batch, NetworkMode mode, bool input_gradient = false);
    // With fake-quantized activations. Also throws mps::Error when a quantizer names a node that
    // is not a conv / fully connected layer of the graph, names one twice, or has bits outside
    // 1..8, 16, 32.
    TrainNetwork(const Graph& graph, int64_t batch, NetworkMode mode,
                 const std::vector<ActivationQuantizer>& activation_quantizers,
                 bool input_gradient = false);
    ~TrainNetwork();
    // New ranges for activation quantizers the network was built with (same layers, bits and
    // signedness; mps::Error otherwise), effective from the next forward. Layers sharing one
    // fake-quant layer (same input value and bits) must get the same range.
    void set_activation_ranges(const std::vector<ActivationQuantizer>& quantizers);
    TrainNetwork(const TrainNetwork&) = delete;
    TrainNetwork& operator=(const TrainNetwork&) = delete;

    int64_t batch() const { return batch_; }
    // {batch, ...} of the graph output, e.g. {batch, 10} for logits.
    const std::vector<int64_t>& output_dims() const { return output_dims_; }

    // `images`: batch images, plain NCHW (batch * the graph's per-image input size floats).
    void forward(const float* images);
    // The graph output of the last forward, plain row-major with output_dims().
    const float* output() const;

    // Training mode only. `diff_output`: plain, output_dims().
    void backward(const float* diff_output);
    // The gradient with respect to the input images of the last backward (plain NCHW); only when
    // built with input_gradient.
    const float* input_gradient() const;

    std::vector<TrainParameter>& parameters() { return parameters_; }
    const std::vector<TrainParameter>& parameters() const { return parameters_; }
    // A parameter's gradient of the last backward, in the graph's plain layout.
    Tensor gradient(const std::string& node, Tensor Node::*field) const;

    // Copies parameters and running statistics from / into the graph's nodes (same names and
    // shapes as the graph this network was built from).
    void load(const Graph& graph);
    void store(Graph& graph) const;

private:
    void sum_gradients(const std::string& value);
    void run_on_host(const std::function<void()>& work);

    dnnl::engine engine_;
    mutable dnnl::stream stream_; // executing is not a change of the network's state
    NetworkMode mode_;
    int64_t batch_;
    std::unique_ptr<TrainBuild> build_;
    std::vector<std::unique_ptr<TrainLayer>> layers_;
    std::vector<TrainParameter> parameters_;
    std::vector<int64_t> output_dims_;
    std::string input_, output_;
    dnnl::memory output_plain_, diff_output_plain_;
    dnnl::primitive output_reorder_, diff_output_reorder_;
    // quantizable layer -> the quantizer its fake-quant layer reads at every pass
    std::map<std::string, std::shared_ptr<ActivationQuantizer>> fake_quant_;
};

} // namespace mps
