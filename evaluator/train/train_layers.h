#pragma once
// Internals of TrainNetwork (evaluator/train/train_network.h): the per-node compilation of a graph into
// oneDNN primitives. Not for use outside train_network.cpp and train_layers.cpp.
#include "evaluator/engine/onednn_util.h"
#include "evaluator/train/train_network.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <functional>
#include <map>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace mps {

// One primitive with its arguments, ready to execute.
struct TrainStep {
    dnnl::primitive primitive;
    std::unordered_map<int, dnnl::memory> args;
};

// A compiled node: what forward and backward execute, in order.
struct TrainLayer {
    std::string node;
    std::string output; // the value it writes
    std::vector<TrainStep> forward;
    std::vector<TrainStep> backward;
    // Runs on the host after the forward steps finished (batch norm running statistics).
    std::function<void()> after_forward;
    // Host work in place of (or after) the primitives, run in order once the stream has
    // finished everything before it: the fake-quant layer's elementwise forward and backward.
    std::function<void()> host_forward, host_backward;
};

// A value of the graph: its activation memory and, in training, one gradient memory per reader
// ("slot"). Slot 0 receives the sum of all slots before the producer's backward reads it.
struct TrainValue {
    std::vector<int64_t> dims; // with the batch dimension
    dnnl::memory value;
    std::vector<dnnl::memory> diffs;
    int readers = 0;   // nodes reading it, plus the loss for the graph output
    int next_slot = 0;
    bool needs_grad = false;
};

// Shared state while compiling a graph.
struct TrainBuild {
    dnnl::engine engine;
    NetworkMode mode;
    int64_t batch = 0;
    std::string input;
    std::map<std::string, TrainValue> values;
    std::vector<TrainParameter>* parameters = nullptr;

    bool training() const { return mode == NetworkMode::training; }
    TrainValue& at(const std::string& name);
    dnnl::memory value(const std::string& name) { return at(name).value; }
    dnnl::memory::desc desc(const std::string& name) { return at(name).value.get_desc(); }
    // Allocates the activation (and gradient slots) of a value a node writes.
    dnnl::memory define(const std::string& name, const dnnl::memory::desc& desc,
                        std::vector<int64_t> dims);
    // The gradient memory the next reader of `name` writes into (scratch when the value needs
    // no gradient).
    // `index` (optional) receives the slot's number.
    dnnl::memory diff_slot(const std::string& name, int* index = nullptr);
    // Slot 0: the summed gradient of a node's output.
    dnnl::memory diff(const std::string& name) { return at(name).diffs.at(0); }
    // Adds a parameter (zero-filled; TrainNetwork::load fills it) and returns a copy of its handle.
    TrainParameter add_parameter(const Node& node, Tensor Node::*field,
                                 const dnnl::memory::desc& internal,
                                 const dnnl::memory::desc& plain, bool trainable, bool decay);
    dnnl::memory zeros(const dnnl::memory::desc& desc) const;
};

// Compiles one node. `fused_relu`: a relu node that is the only reader of this batch_norm's
// output, computed by the batch norm primitive itself (and then not compiled on its own).
// Throws mps::Error naming the node when it cannot.
TrainLayer build_train_layer(TrainBuild& build, const Node& node,
                             const Node* fused_relu = nullptr);

// Compiles a fake-quant layer (quantization-aware training, ActivationQuantizer in
// train_network.h): writes `out` = fake_quantize_activation(`in`) (activation_range.h, the
// evaluator's own function) in the layout of `in`. Backward is the straight-through estimator
// with the clip mask: the gradient of `out` passes to `in` where the quantizer did not clip
// (qmin <= x / s <= qmax, the clamp of the forward inactive; signed 1-bit: |x| <= range) and is 0
// elsewhere (and where s = 0, which maps everything to 0). The padding of a blocked layout stays
// 0 forward and backward.
// The layer reads `quantizer` at every pass, so a new range set through it (re-calibration while
// fine-tuning) takes effect from the next forward on. With a hook (ActivationQuantizer::hook) the
// layer calls it forward and backward instead, the backward also when `in` needs no gradient.
TrainLayer build_fake_quant_layer(TrainBuild& build, const std::string& in, const std::string& out,
                                  std::shared_ptr<const ActivationQuantizer> quantizer);

} // namespace mps
