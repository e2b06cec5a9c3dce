#include "evaluator/io/export_plan.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace mps {

namespace {

constexpr uint8_t signed_zero_point = 128;
constexpr double bias_code_magnitude = 1 << 20; // a zero kernel's bias: about 20 bits of codes

// The largest j with qmax * 2^j <= limit.
int headroom(int qmax, int limit) {
    int j = 0;
    while (qmax > 0 && (qmax << (j + 1)) <= limit) ++j;
    return j;
}

bool has_uint8_codes(int bits, bool is_signed) {
    return bits >= 1 && bits <= 8 && !(is_signed && bits == 1);
}

} // namespace

ActivationForm activation_form(float range, int bits, bool is_signed) {
    ActivationForm form;
    form.bits = bits;
    form.is_signed = is_signed;
    form.range = range;
    if (bits == float_bits) return form;
    form.scale = activation_scale(range, bits, is_signed);
    if (is_signed && bits == 1) {
        form.kind = ActivationForm::Kind::binary;
        return form;
    }
    const int qmax = activation_qmax(bits, is_signed);
    if (!has_uint8_codes(bits, is_signed)) {
        form.kind = ActivationForm::Kind::emulated;
        form.level_max = static_cast<float>(qmax);
        return form;
    }
    form.kind = ActivationForm::Kind::codes;
    form.zero_point = is_signed ? signed_zero_point : 0;
    form.code_min = static_cast<uint8_t>(is_signed ? signed_zero_point - qmax : 0);
    form.code_max = static_cast<uint8_t>(form.zero_point + qmax);
    if (form.scale == 0.0f) { // r = 0: every value quantizes to 0
        form.scale = 1.0f;
        form.code_min = form.code_max = form.zero_point;
        return form;
    }
    form.shift = headroom(qmax, is_signed ? 127 : 255);
    return form;
}

bool stores_int4(const LayerBits& bits, int opset) {
    return opset >= 21 && std::all_of(bits.weight_bits.begin(), bits.weight_bits.end(),
                                      [](int b) { return b >= 0 && b <= 4; });
}

WeightForm weight_form(const Node& layer, const LayerBits& bits, const WeightQuantizer& quantizer,
                       bool int4) {
    WeightForm form;
    const bool small = std::all_of(bits.weight_bits.begin(), bits.weight_bits.end(),
                                   [](int b) { return b >= 0 && b <= 8; });
    if (!quantizer.has_integer_form() || !small) {
        form.why_float = !quantizer.has_integer_form()
                             ? "weight quantizer '" + quantizer.name() + "' has no integer form"
                             : "16- or 32-bit kernels have no int8 form";
        form.dequantized = quantize_weights(quantizer, layer.weight, bits.weight_bits);
        return form;
    }
    const int64_t kernels = kernel_count(layer);
    const int64_t per_kernel = layer.weight.numel() / kernels;
    form.integer = true;
    form.int4 = int4;
    form.codes.assign(static_cast<size_t>(layer.weight.numel()), 0);
    form.scales.assign(static_cast<size_t>(kernels), 1.0f);
    form.zero_kernel.assign(static_cast<size_t>(kernels), true);
    form.shifts.assign(static_cast<size_t>(kernels), 0);
    for (int64_t k = 0; k < kernels; ++k) {
        const int b = bits.weight_bits[static_cast<size_t>(k)];
        const std::span<const float> w(layer.weight.data.data() + k * per_kernel,
                                       static_cast<size_t>(per_kernel));
        if (b == 0) continue; // pruned: codes 0
        const WeightQuantizer::KernelCodes kernel = quantizer.kernel_codes(w, b);
        const float scale = kernel.scale;
        if (scale == 0.0f) continue; // all zeros: codes 0
        const std::vector<int32_t>& codes = kernel.codes;
        const int shift = int4 ? 0 : headroom(b == 1 ? 1 : uniform_qmax(b), 127);
        for (int64_t i = 0; i < per_kernel; ++i)
            form.codes[static_cast<size_t>(k * per_kernel + i)] =
                static_cast<int8_t>(codes[static_cast<size_t>(i)] * (1 << shift));
        form.scales[static_cast<size_t>(k)] = std::ldexp(scale, -shift); // exact
        form.shifts[static_cast<size_t>(k)] = shift;
        form.zero_kernel[static_cast<size_t>(k)] = false;
    }
    return form;
}

std::optional<std::vector<int32_t>> bias_codes(const Node& layer, WeightForm& weights,
                                               float input_scale) {
    const int64_t kernels = kernel_count(layer);
    std::vector<int32_t> codes(static_cast<size_t>(kernels), 0);
    for (int64_t k = 0; k < kernels; ++k) {
        const size_t i = static_cast<size_t>(k);
        const float b = layer.bias.empty() ? 0.0f : layer.bias.data[i];
        if (weights.zero_kernel[i]) // any scale serves zero codes: pick one that keeps the bias
            weights.scales[i] = b == 0.0f || input_scale == 0.0f
                                    ? 1.0f
                                    : static_cast<float>(std::fabs(b) / input_scale /
                                                         bias_code_magnitude);
        const float unit = input_scale * weights.scales[i]; // what ONNX Runtime multiplies by
        if (unit == 0.0f || !std::isfinite(unit)) return std::nullopt;
        const double code = std::nearbyint(static_cast<double>(b) / unit);
        if (std::fabs(code) > std::numeric_limits<int32_t>::max()) return std::nullopt;
        codes[i] = static_cast<int32_t>(code);
    }
    return codes;
}

namespace {

bool is_chain_stage(const Node& node) {
    return node.op == Op::max_pool || node.op == Op::flatten;
}

// The values from P's stage output to M's input `value` (P's stage output first) when they form
// a code chain: P -> [ReLU | Clip] -> (max pool | flatten)* -> value, each value read once.
// Returns the producer P, or nullptr.
const Node* chain_to(const Graph& graph, const std::string& value,
                     std::vector<std::string>& values) {
    std::vector<std::string> path = {value}; // M's input first
    std::string current = value;
    const Node* node = nullptr;
    for (;;) {
        if (graph.consumers(current) != 1 || current == graph.output) return nullptr;
        node = graph.producer(current);
        if (!node) return nullptr;
        if (is_quantizable(*node)) break;
        const bool activation = node->op == Op::relu || node->op == Op::clip;
        if (!activation && !is_chain_stage(*node)) return nullptr;
        const Node* before = graph.producer(node->inputs.at(0));
        if (activation && (!before || !is_quantizable(*before))) return nullptr; // right after P
        current = node->inputs.at(0);
        path.push_back(current);
    }
    // With a ReLU / Clip after P, P's stage output is the activation's output, not P's.
    if (path.size() > 1) {
        const Node* after_p = graph.producer(path[path.size() - 2]);
        if (after_p->op == Op::relu || after_p->op == Op::clip) path.pop_back();
    }
    values.assign(path.rbegin(), path.rend());
    return node;
}

// Fuses the chain ending at `consumer`'s input into its producer when both are integer.
void fuse_chain(const Graph& graph, ExportPlan& plan, std::map<std::string, size_t>& index,
                const Node& consumer) {
    const LayerPlan& m = plan.layers[index.at(consumer.name)];
    if (m.input.kind != ActivationForm::Kind::codes) return;
    std::vector<std::string> values;
    const Node* producer = chain_to(graph, consumer.inputs.at(0), values);
    if (!producer) return;
    LayerPlan& p = plan.layers[index.at(producer->name)];
    if (!p.integer() || p.output || p.weights.int4) return;
    WeightForm weights = p.weights;
    auto bias = bias_codes(*producer, weights, std::ldexp(p.input.scale, -p.input.shift));
    if (!bias) return;
    p.weights = std::move(weights);
    p.bias = std::move(*bias);
    p.output = m.input;
    // Requantize P's stage output (with the Clip to M's codes) and every max pool output before
    // M's input; M's own QuantizeLinear covers its input.
    values.pop_back();
    p.output_chain = values;
    for (size_t i = 0; i < values.size(); ++i) {
        plan.requantize[values[i]] = m.input;
        plan.clip_after[values[i]] =
            i == 0 && (m.input.code_min != 0 || m.input.code_max != 255);
    }
}

std::string describe_float(const LayerPlan& layer) {
    if (!layer.weights.integer) return layer.weights.why_float + ": float32 weights";
    if (layer.input.kind == ActivationForm::Kind::none) return "32-bit input: float32 input";
    return std::to_string(layer.input.bits) + "-bit " +
           (layer.input.is_signed ? "signed" : "unsigned") +
           " input has no uint8 form: quantized with float ops";
}

} // namespace

ExportPlan plan_export(const Graph& folded, const BitPolicy& policy,
                       const WeightQuantizer& quantizer, const Calibration& calibration,
                       bool fuse, int opset) {
    policy.validate(folded);
    ExportPlan plan;
    std::map<std::string, size_t> index;
    for (const Node* node : quantizable_layers(folded)) {
        const LayerBits& bits = *policy.find(node->name);
        const std::string& value = node->inputs.at(0);
        LayerPlan layer;
        layer.name = node->name;
        if (bits.activation_bits != float_bits)
            layer.input = activation_form(calibration.range(value, bits.activation_bits),
                                          bits.activation_bits,
                                          !calibration.is_unsigned.at(value));
        layer.weights = weight_form(*node, bits, quantizer, stores_int4(bits, opset));
        index[node->name] = plan.layers.size();
        plan.layers.push_back(std::move(layer));
    }
    for (const Node* node : quantizable_layers(folded))
        if (fuse) fuse_chain(folded, plan, index, *node);
    for (const LayerPlan& layer : plan.layers)
        if (!layer.integer()) plan.notes.push_back(layer.name + ": " + describe_float(layer));
    return plan;
}

} // namespace mps
