#include "evaluator/train/train_network.h"

#include "evaluator/base/error.h"
#include "evaluator/train/train_layers.h"

#include <algorithm>
#include <cstring>
#include <set>

namespace mps {

using dnnl::memory;
using onednn::plain_desc;

namespace {

// A fake-quant layer to compile just before node `before` (an index into the graph's nodes).
struct FakeQuantInsert {
    size_t before = 0;
    std::string in, out;
    ActivationQuantizer quantizer;
    std::vector<std::string> layers; // the quantizable layers reading `out`
};

// Renames the quantized inputs of `graph`'s layers to the fake-quant layers' outputs and returns
// those layers, one per distinct (value, bits, range, signedness), each placed before its first
// reader.
std::vector<FakeQuantInsert> plan_fake_quant(Graph& graph,
                                             const std::vector<ActivationQuantizer>& quantizers) {
    std::vector<FakeQuantInsert> inserts;
    std::set<std::string> seen;
    for (const ActivationQuantizer& q : quantizers) {
        if (!seen.insert(q.layer).second)
            throw Error("trainer: two activation quantizers for layer '" + q.layer +
                        "'; give each layer at most one");
        if (!valid_activation_bits(q.bits))
            throw Error("trainer: layer '" + q.layer + "': activation bit-width " +
                        std::to_string(q.bits) + " is out of range; use 1..8, 16 or 32 (float)");
        auto node = std::find_if(graph.nodes.begin(), graph.nodes.end(),
                                 [&](const Node& n) { return n.name == q.layer; });
        if (node == graph.nodes.end() || !is_quantizable(*node))
            throw Error("trainer: an activation quantizer names '" + q.layer +
                        "', which is not a conv or fully connected node of the graph");
        if (q.bits == float_bits) continue;
        std::string& in = node->inputs.at(0);
        auto same = std::find_if(inserts.begin(), inserts.end(), [&](const FakeQuantInsert& f) {
            return f.in == in && f.quantizer.bits == q.bits && f.quantizer.range == q.range &&
                   f.quantizer.is_signed == q.is_signed && f.quantizer.hook == q.hook;
        });
        const size_t index = static_cast<size_t>(node - graph.nodes.begin());
        if (same == inserts.end()) {
            FakeQuantInsert f{index, in, in + "/fq" + std::to_string(q.bits), q, {}};
            for (int k = 1; graph.shapes.count(f.out); ++k) // never shadow a graph value
                f.out = in + "/fq" + std::to_string(q.bits) + "_" + std::to_string(k);
            same = inserts.insert(inserts.end(), f);
        }
        same->before = std::min(same->before, index);
        same->layers.push_back(q.layer);
        in = same->out;
    }
    return inserts;
}

} // namespace

TrainNetwork::TrainNetwork(const Graph& graph, int64_t batch, NetworkMode mode,
                           bool input_gradient)
    : TrainNetwork(graph, batch, mode, {}, input_gradient) {}

TrainNetwork::TrainNetwork(const Graph& original, int64_t batch, NetworkMode mode,
                           const std::vector<ActivationQuantizer>& activation_quantizers,
                           bool input_gradient)
    : engine_(dnnl::engine::kind::cpu, 0), stream_(engine_), mode_(mode), batch_(batch),
      build_(std::make_unique<TrainBuild>()), input_(original.input), output_(original.output) {
    if (batch < 1) throw Error("trainer: batch size must be positive");
    if (original.input_shape.empty()) throw Error("trainer: the graph has no input shape");
    // Compiled with the quantized layers reading their fake-quant layers' outputs.
    Graph graph = original;
    const std::vector<FakeQuantInsert> inserts = plan_fake_quant(graph, activation_quantizers);
    TrainBuild& b = *build_;
    b.engine = engine_;
    b.mode = mode;
    b.batch = batch;
    b.input = graph.input;
    b.parameters = &parameters_;
    const bool training = mode == NetworkMode::training;

    // Count readers first so every value gets one gradient slot per reader.
    for (const Node& node : graph.nodes)
        for (const std::string& v : node.inputs) ++b.values[v].readers;
    for (const FakeQuantInsert& f : inserts) ++b.values[f.in].readers;
    for (const Node& node : graph.nodes) {
        TrainValue& v = b.values[node.output];
        v.needs_grad = training;
    }
    for (const FakeQuantInsert& f : inserts) b.values[f.out].needs_grad = training;
    TrainValue& out = b.values[graph.output];
    ++out.readers;      // the loss
    out.next_slot = 1;  // ... owns slot 0

    std::vector<int64_t> input_dims{batch};
    input_dims.insert(input_dims.end(), graph.input_shape.begin(), graph.input_shape.end());
    b.values[graph.input].needs_grad = training && input_gradient;
    b.define(graph.input, plain_desc(input_dims), input_dims);

    // A batch norm whose output only a ReLU reads computes the ReLU itself (one pass less over
    // the activations forward and backward).
    std::set<std::string> fused;
    for (size_t i = 0; i < graph.nodes.size(); ++i) {
        const Node& node = graph.nodes[i];
        for (const FakeQuantInsert& f : inserts) {
            if (f.before != i) continue;
            auto quantizer = std::make_shared<ActivationQuantizer>(f.quantizer);
            for (const std::string& layer : f.layers) fake_quant_[layer] = quantizer;
            layers_.push_back(
                std::make_unique<TrainLayer>(build_fake_quant_layer(b, f.in, f.out, quantizer)));
        }
        if (fused.count(node.name)) continue;
        const Node* relu = nullptr;
        if (node.op == Op::batch_norm && node.output != graph.output &&
            graph.consumers(node.output) == 1)
            for (const Node& reader : graph.nodes)
                if (reader.op == Op::relu && reader.inputs[0] == node.output) relu = &reader;
        if (relu) fused.insert(relu->name);
        layers_.push_back(std::make_unique<TrainLayer>(build_train_layer(b, node, relu)));
    }
    if (!b.values[graph.output].value)
        throw Error("trainer: graph output '" + graph.output + "' is not produced by any node");

    output_dims_ = b.at(graph.output).dims;
    const memory::desc plain = plain_desc(output_dims_);
    output_plain_ = b.value(graph.output);
    if (output_plain_.get_desc() != plain) {
        output_plain_ = b.zeros(plain);
        output_reorder_ = dnnl::reorder(b.value(graph.output), output_plain_);
    }
    if (training) {
        diff_output_plain_ = b.diff(graph.output);
        if (diff_output_plain_.get_desc() != plain) {
            diff_output_plain_ = b.zeros(plain);
            diff_output_reorder_ = dnnl::reorder(diff_output_plain_, b.diff(graph.output));
        }
    }
    load(graph);
}

TrainNetwork::~TrainNetwork() = default;

void TrainNetwork::forward(const float* images) {
    const memory input = build_->value(input_);
    std::memcpy(input.get_data_handle(), images, input.get_desc().get_size());
    for (const auto& layer : layers_) {
        for (const TrainStep& step : layer->forward) step.primitive.execute(stream_, step.args);
        run_on_host(layer->host_forward);
    }
    if (output_reorder_)
        output_reorder_.execute(stream_, {{DNNL_ARG_FROM, build_->value(output_)}, {DNNL_ARG_TO, output_plain_}});
    stream_.wait();
    if (mode_ == NetworkMode::training)
        for (const auto& layer : layers_)
            if (layer->after_forward) layer->after_forward();
}

void TrainNetwork::run_on_host(const std::function<void()>& work) {
    if (!work) return;
    stream_.wait(); // the host reads what the primitives before it wrote
    work();
}

const float* TrainNetwork::output() const {
    return static_cast<const float*>(output_plain_.get_data_handle());
}

void TrainNetwork::sum_gradients(const std::string& value) {
    const TrainValue& v = build_->at(value);
    if (v.diffs.size() < 2) return;
    stream_.wait();
    float* sum = static_cast<float*>(v.diffs[0].get_data_handle());
    const int64_t n = static_cast<int64_t>(v.diffs[0].get_desc().get_size() / sizeof(float));
    for (size_t s = 1; s < v.diffs.size(); ++s) {
        const float* add = static_cast<const float*>(v.diffs[s].get_data_handle());
#pragma omp parallel for schedule(static)
        for (int64_t i = 0; i < n; ++i) sum[i] += add[i];
    }
}

void TrainNetwork::backward(const float* diff_output) {
    if (mode_ != NetworkMode::training)
        throw Error("trainer: backward() on a network built for inference");
    std::memcpy(diff_output_plain_.get_data_handle(), diff_output,
                diff_output_plain_.get_desc().get_size());
    if (diff_output_reorder_)
        diff_output_reorder_.execute(
            stream_, {{DNNL_ARG_FROM, diff_output_plain_}, {DNNL_ARG_TO, build_->diff(output_)}});
    for (auto it = layers_.rbegin(); it != layers_.rend(); ++it) {
        sum_gradients((*it)->output);
        for (const TrainStep& step : (*it)->backward) step.primitive.execute(stream_, step.args);
        run_on_host((*it)->host_backward);
    }
    stream_.wait();
    if (build_->at(input_).needs_grad) sum_gradients(input_);
}

const float* TrainNetwork::input_gradient() const {
    const TrainValue& v = build_->at(input_);
    if (!v.needs_grad) throw Error("trainer: network built without input gradients");
    return static_cast<const float*>(v.diffs.at(0).get_data_handle());
}

namespace {

template <typename G>
auto& node_named(G& graph, const std::string& name) {
    for (auto& n : graph.nodes)
        if (n.name == name) return n;
    throw Error("trainer: the graph has no node '" + name + "' (it must be the graph the "
                "network was built from)");
}

} // namespace

void TrainNetwork::load(const Graph& graph) {
    for (const TrainParameter& p : parameters_) {
        const Tensor& t = node_named(graph, p.node).*p.field;
        if (static_cast<size_t>(t.numel()) * sizeof(float) != p.plain.get_size())
            throw Error("trainer: node '" + p.node + "': parameter size does not match the network");
        const memory user(p.plain, engine_, const_cast<float*>(t.data.data()));
        dnnl::reorder(user, p.value).execute(stream_, {{DNNL_ARG_FROM, user}, {DNNL_ARG_TO, p.value}});
    }
    stream_.wait();
}

void TrainNetwork::store(Graph& graph) const {
    for (const TrainParameter& p : parameters_) {
        Tensor& t = node_named(graph, p.node).*p.field;
        if (static_cast<size_t>(t.numel()) * sizeof(float) != p.plain.get_size())
            throw Error("trainer: node '" + p.node + "': parameter size does not match the network");
        memory user(p.plain, engine_, t.data.data());
        dnnl::reorder(p.value, user).execute(stream_, {{DNNL_ARG_FROM, p.value}, {DNNL_ARG_TO, user}});
    }
    stream_.wait();
}

Tensor TrainNetwork::gradient(const std::string& node, Tensor Node::*field) const {
    for (const TrainParameter& p : parameters_) {
        if (p.node != node || p.field != field) continue;
        if (!p.grad) throw Error("trainer: node '" + node + "': parameter has no gradient");
        const memory::dims d = p.plain.dims();
        std::vector<int64_t> dims(d.begin(), d.end());
        if (dims.size() == 5) dims = {dims[0] * dims[1], dims[2], dims[3], dims[4]}; // goihw
        Tensor t(dims);
        memory user(p.plain, engine_, t.data.data());
        dnnl::reorder(p.grad, user).execute(stream_, {{DNNL_ARG_FROM, p.grad}, {DNNL_ARG_TO, user}});
        stream_.wait();
        return t;
    }
    throw Error("trainer: node '" + node + "' has no such parameter");
}

void TrainNetwork::set_activation_ranges(const std::vector<ActivationQuantizer>& quantizers) {
    for (const ActivationQuantizer& q : quantizers) {
        if (q.bits == float_bits) continue;
        const auto it = fake_quant_.find(q.layer);
        if (it == fake_quant_.end() || it->second->bits != q.bits || it->second->is_signed != q.is_signed)
            throw Error("trainer: layer '" + q.layer + "' has no " + std::to_string(q.bits) +
                        "-bit activation quantizer to set a range of; build the network with it");
        it->second->range = q.range;
    }
}

} // namespace mps
