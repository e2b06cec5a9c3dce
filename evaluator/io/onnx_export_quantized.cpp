#include "evaluator/io/onnx_export_quantized.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/io/export_plan.h"
#include "evaluator/io/onnx_builder.h"
#include "evaluator/io/onnx_channel_ops.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <cmath>
#include <map>
#include <utility>

namespace mps {

namespace {

using Kind = ActivationForm::Kind;

std::string quantizer_text(const QuantizerSpec& spec) {
    std::string text = spec.name;
    for (const auto& [key, value] : spec.args) text += " " + key + "=" + value;
    return text;
}

class QdqEmitter {
public:
    QdqEmitter(const Graph& graph, const BitPolicy& policy, const ExportPlan& plan, int opset,
               onnx::GraphProto* proto)
        : graph_(graph), policy_(policy), plan_(plan), opset_(opset), b_(proto) {
        b_.reserve("input");
        b_.reserve("logits");
        names_[graph.input] = "input";
        for (size_t i = 0; i < plan.layers.size(); ++i) layer_index_[plan.layers[i].name] = i;
    }

    void run() {
        for (const Node& node : graph_.nodes) {
            const std::string out = node.output == graph_.output ? "logits" : b_.unique(node.output);
            if (is_quantizable(node)) emit_layer(node, plan_.layers.at(layer_index_.at(node.name)), out);
            else emit_float_node(node, out);
            names_[node.output] = out;
            if (auto it = plan_.requantize.find(node.output); it != plan_.requantize.end())
                names_[node.output] =
                    codes(out, it->second, plan_.clip_after.at(node.output), node.name + ".requant");
        }
    }

private:
    const Graph& graph_;
    const BitPolicy& policy_;
    const ExportPlan& plan_;
    int opset_;
    OnnxBuilder b_;
    std::map<std::string, std::string> names_; // IR value -> ONNX value holding it (float32)
    std::map<std::string, size_t> layer_index_;
    std::map<std::pair<std::string, int>, std::string> quantized_; // (value, bits) -> ONNX value

    std::string name_of(const std::string& value) const { return names_.at(value); }

    std::string scalar(const std::string& base, float v) { return b_.add_float(base, {}, {v}); }
    std::string scalar_u8(const std::string& base, uint8_t v) { return b_.add_uint8(base, {}, {v}); }

    // QuantizeLinear -> [Clip to the codes] -> DequantizeLinear of the float value `x`.
    std::string codes(const std::string& x, const ActivationForm& form, bool clip,
                      const std::string& name) {
        const std::string scale = scalar(name + ".scale", form.scale);
        const std::string zero = scalar_u8(name + ".zero_point", form.zero_point);
        std::string q = b_.add_node("QuantizeLinear", name + ".quantize", {x, scale, zero},
                                    x + ".codes")->output(0);
        if (clip)
            q = b_.add_node("Clip", name + ".clip",
                            {q, scalar_u8(name + ".code_min", form.code_min),
                             scalar_u8(name + ".code_max", form.code_max)},
                            x + ".codes_clipped")->output(0);
        return b_.add_node("DequantizeLinear", name + ".dequantize", {q, scale, zero},
                           x + ".dequantized")->output(0);
    }

    // Signed 1-bit: r * sign(x) with sign(0) = +1.
    std::string binary(const std::string& x, const ActivationForm& form, const std::string& name) {
        const std::string ge = b_.add_node("GreaterOrEqual", name + ".sign",
                                           {x, scalar(name + ".zero", 0.0f)}, x + ".nonnegative")
                                   ->output(0);
        return b_.add_node("Where", name + ".binary",
                           {ge, scalar(name + ".plus", form.scale),
                            scalar(name + ".minus", -form.scale)},
                           x + ".binary")->output(0);
    }

    // 16 bits: s * clip(round(x / s), qmin, qmax) with float ops (Round is half to even).
    std::string emulated(const std::string& x, const ActivationForm& form, const std::string& name) {
        if (form.scale == 0.0f)
            return b_.add_node("Mul", name + ".zero", {x, scalar(name + ".zero", 0.0f)},
                               x + ".quantized")->output(0);
        const std::string s = scalar(name + ".scale", form.scale);
        std::string v = b_.add_node("Div", name + ".divide", {x, s}, x + ".steps")->output(0);
        v = b_.add_node("Round", name + ".round", {v}, x + ".rounded")->output(0);
        const float lo = form.is_signed ? -form.level_max : 0.0f;
        v = b_.add_node("Clip", name + ".clip",
                        {v, scalar(name + ".level_min", lo), scalar(name + ".level_max", form.level_max)},
                        x + ".levels")->output(0);
        return b_.add_node("Mul", name + ".dequantize", {v, s}, x + ".quantized")->output(0);
    }

    // The layer's input as the layer reads it; one quantized copy per (value, bits).
    std::string layer_input(const Node& node, const LayerPlan& layer) {
        const std::string& value = node.inputs.at(0);
        const ActivationForm& form = layer.input;
        if (form.kind == Kind::none) return name_of(value);
        const auto key = std::make_pair(value, form.bits);
        if (auto it = quantized_.find(key); it != quantized_.end()) return it->second;
        const std::string name = node.name + ".input";
        const std::string x = name_of(value);
        std::string q = form.kind == Kind::codes    ? codes(x, form, form.code_min != 0 || form.code_max != 255, name)
                        : form.kind == Kind::binary ? binary(x, form, name)
                                                    : emulated(x, form, name);
        if (form.kind == Kind::codes && form.shift > 0) { // exact: the values are on the grid
            ActivationForm fine = form;
            fine.scale = std::ldexp(form.scale, -form.shift);
            q = codes(q, fine, false, name + ".headroom");
        }
        return quantized_[key] = q;
    }

    std::string weight_input(const Node& node, const LayerPlan& layer) {
        const WeightForm& w = layer.weights;
        const std::string base = node.name + ".weight";
        if (!w.integer) return b_.add_float(base, node.weight.dims, w.dequantized.data);
        const std::string codes = stores_int4(*policy_.find(node.name), opset_)
                                      ? b_.add_int4(base + "_codes", node.weight.dims, w.codes, true)
                                      : b_.add_int8(base + "_codes", node.weight.dims, w.codes);
        const int64_t kernels = static_cast<int64_t>(w.scales.size());
        auto* dq = b_.add_node("DequantizeLinear", base + ".dequantize",
                               {codes, b_.add_float(base + "_scale", {kernels}, w.scales)}, base);
        OnnxBuilder::set_int(dq, "axis", 0);
        return dq->output(0);
    }


    // A fused layer's int32 bias in units of s_x * s_w[k].
    std::string bias_input(const Node& node, const LayerPlan& layer) {
        const std::string base = node.name + ".bias";
        std::vector<float> units;
        const float input_unit = std::ldexp(layer.input.scale, -layer.input.shift);
        for (float s : layer.weights.scales) units.push_back(input_unit * s);
        const int64_t kernels = static_cast<int64_t>(units.size());
        auto* dq = b_.add_node("DequantizeLinear", base + ".dequantize",
                               {b_.add_int32(base + "_codes", {kernels}, layer.bias),
                                b_.add_float(base + "_scale", {kernels}, units)},
                               base);
        OnnxBuilder::set_int(dq, "axis", 0);
        return dq->output(0);
    }

    void emit_layer(const Node& node, const LayerPlan& layer, const std::string& out);
    void emit_float_node(const Node& node, const std::string& out);
    void emit_hard_swish_opset13(const Node& node, const std::vector<std::string>& inputs,
                                 const std::string& out);
    static void set_hard_sigmoid(onnx::NodeProto* proto, float alpha, float beta) {
        OnnxBuilder::set_float(proto, "alpha", alpha);
        OnnxBuilder::set_float(proto, "beta", beta);
    }
    static void set_window(onnx::NodeProto* proto, const Node& node) {
        OnnxBuilder::set_ints(proto, "kernel_shape", {node.kernel[0], node.kernel[1]});
        OnnxBuilder::set_ints(proto, "strides", {node.stride[0], node.stride[1]});
        OnnxBuilder::set_ints(proto, "pads", {node.pad_begin[0], node.pad_begin[1], node.pad_end[0],
                                              node.pad_end[1]});
    }
};

// Conv / Gemm on the layer's input and weights. A fused layer takes its int32 bias (ONNX
// Runtime's QLinearConv / QGemm); an integer Gemm whose output stays float adds its float bias
// after the product, so the runtime still runs the product as QGemm with a float output.
void QdqEmitter::emit_layer(const Node& node, const LayerPlan& layer, const std::string& out) {
    std::vector<std::string> inputs = {layer_input(node, layer), weight_input(node, layer)};
    const bool has_bias = !node.bias.empty() || layer.output;
    const bool bias_after = node.op == Op::fully_connected && layer.integer() && !layer.output &&
                            !node.bias.empty();
    if (layer.output) inputs.push_back(bias_input(node, layer));
    else if (has_bias && !bias_after)
        inputs.push_back(b_.add_float(node.name + ".bias", node.bias.dims, node.bias.data));
    const std::string product = bias_after ? b_.unique(node.output + ".product") : out;
    auto* proto = b_.add_node_to(node.op == Op::conv ? "Conv" : "Gemm", node.name, inputs, product);
    if (node.op == Op::conv) {
        set_window(proto, node);
        OnnxBuilder::set_ints(proto, "dilations", {node.dilation[0], node.dilation[1]});
        OnnxBuilder::set_int(proto, "group", node.groups);
    } else {
        OnnxBuilder::set_int(proto, "transB", 1);
    }
    if (bias_after)
        b_.add_node_to("Add", node.name + ".bias_add",
                       {product, b_.add_float(node.name + ".bias", node.bias.dims, node.bias.data)},
                       out);
}

void QdqEmitter::emit_float_node(const Node& node, const std::string& out) {
    std::vector<std::string> inputs;
    for (const std::string& v : node.inputs) inputs.push_back(name_of(v));
    static const std::map<Op, const char*> types = {
        {Op::relu, "Relu"}, {Op::clip, "Clip"}, {Op::max_pool, "MaxPool"},
        {Op::average_pool, "AveragePool"}, {Op::global_average_pool, "GlobalAveragePool"},
        {Op::add, "Add"}, {Op::flatten, "Flatten"}, {Op::concat, "Concat"},
        {Op::sigmoid, "Sigmoid"}, {Op::hard_sigmoid, "HardSigmoid"}, {Op::hard_swish, "HardSwish"},
        {Op::mul, "Mul"}};
    if (node.op == Op::hard_swish && opset_ < 14) return emit_hard_swish_opset13(node, inputs, out);
    if (is_channel_op(node.op))
        return emit_channel_op(b_, node, graph_.shapes.at(node.inputs.at(0)), inputs.at(0), out);
    auto type = types.find(node.op);
    if (type == types.end())
        throw Error("export: node '" + node.name + "' (" + op_name(node.op) +
                    ") is not expected in a BN-folded graph");
    if (node.op == Op::clip) {
        inputs.push_back(scalar(node.name + ".min", node.clip_min));
        inputs.push_back(scalar(node.name + ".max", node.clip_max));
    }
    auto* proto = b_.add_node_to(type->second, node.name, inputs, out);
    if (node.op == Op::max_pool || node.op == Op::average_pool) set_window(proto, node);
    if (node.op == Op::average_pool)
        OnnxBuilder::set_int(proto, "count_include_pad", node.count_include_pad ? 1 : 0);
    if (node.op == Op::flatten || node.op == Op::concat) OnnxBuilder::set_int(proto, "axis", 1);
    if (node.op == Op::hard_sigmoid) set_hard_sigmoid(proto, node.alpha, node.beta);
}

// HardSwish is opset 14; before it, x * HardSigmoid(x) with alpha 1/6, beta 1/2 is the same op.
void QdqEmitter::emit_hard_swish_opset13(const Node& node, const std::vector<std::string>& inputs,
                                         const std::string& out) {
    onnx::NodeProto* gate =
        b_.add_node("HardSigmoid", node.name + ".gate", inputs, node.name + ".gate");
    set_hard_sigmoid(gate, 1.0f / 6.0f, 0.5f);
    b_.add_node_to("Mul", node.name, {inputs.at(0), gate->output(0)}, out);
}

void add_metadata(onnx::ModelProto& model, const std::string& key, const std::string& value) {
    auto* prop = model.add_metadata_props();
    prop->set_key("mpsearch." + key);
    prop->set_value(value);
}

void record_provenance(onnx::ModelProto& model, const BitPolicy& policy, const ExportPlan& plan,
                       const QuantizedExportInfo& info) {
    add_metadata(model, "policy", policy.to_string());
    add_metadata(model, "weight_quantizer", quantizer_text(info.weight_quantizer));
    add_metadata(model, "activation_calibration", quantizer_text(info.activation_calibration));
    add_metadata(model, "calibration_images", std::to_string(info.calibration_images));
    add_metadata(model, "source_model_sha256", info.source_model_sha256);
    add_metadata(model, "source_model", info.source_model_path);
    std::string notes;
    for (const std::string& line : plan.notes) notes += (notes.empty() ? "" : "\n") + line;
    add_metadata(model, "float_layers", notes);
}

} // namespace

QuantizedModel export_quantized_onnx_bytes(const Graph& folded, const BitPolicy& policy,
                                           const WeightQuantizer& quantizer,
                                           const Calibration& calibration,
                                           const QuantizedExportInfo& info) {
    if (info.opset != 13 && info.opset != 21)
        throw Error("export: opset " + std::to_string(info.opset) + " is not supported; use 13 "
                    "(int8 weights) or 21 (INT4 weights where every kernel has at most 4 bits)");
    const ExportPlan plan = plan_export(folded, policy, quantizer, calibration, info.fuse, info.opset);
    onnx::ModelProto model;
    model.set_ir_version(info.opset >= 21 ? 10 : 7);
    model.set_producer_name("mpsearch");
    model.set_producer_version("0.1");
    auto* opset = model.add_opset_import();
    opset->set_domain("");
    opset->set_version(info.opset);
    auto* graph = model.mutable_graph();
    graph->set_name("mpsearch_quantized");
    OnnxBuilder::set_value_info(graph->add_input(), "input", folded.input_shape);
    OnnxBuilder::set_value_info(graph->add_output(), "logits", folded.shapes.at(folded.output));
    QdqEmitter(folded, policy, plan, info.opset, graph).run();
    record_provenance(model, policy, plan, info);

    QuantizedModel result;
    if (!model.SerializeToString(&result.bytes))
        throw Failure("export: protobuf serialization failed (model larger than 2 GB?)");
    result.notes = plan.notes;
    result.layers = static_cast<int>(plan.layers.size());
    for (const LayerPlan& layer : plan.layers) {
        result.integer_layers += layer.integer();
        result.fused_layers += layer.output.has_value();
    }
    return result;
}

QuantizedModel export_quantized_onnx(const Graph& folded, const BitPolicy& policy,
                                     const WeightQuantizer& quantizer,
                                     const Calibration& calibration,
                                     const QuantizedExportInfo& info, const std::string& path) {
    QuantizedModel model = export_quantized_onnx_bytes(folded, policy, quantizer, calibration, info);
    write_file_atomically(path, model.bytes);
    return model;
}

QuantizedExportInfo export_info_of(const PolicyFile& file, int64_t calibration_images) {
    QuantizedExportInfo info;
    info.source_model_sha256 = file.model_sha256;
    info.source_model_path = file.model_path;
    info.weight_quantizer = file.weight_quantizer;
    info.activation_calibration = file.activation_calibration;
    info.calibration_images = calibration_images;
    return info;
}

} // namespace mps
