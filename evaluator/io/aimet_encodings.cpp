#include "evaluator/io/aimet_encodings.h"

#include "evaluator/quant/activation_range.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <span>

namespace mps {

namespace {

using Json = nlohmann::ordered_json;
constexpr int min_bits = 4; // what the sidecar's consumers take; below it is listed as omitted

Json encoding(int bits, float scale, int offset, bool symmetric) {
    return {{"bitwidth", bits},
            {"dtype", "int"},
            {"is_symmetric", symmetric ? "True" : "False"},
            {"max", scale * static_cast<float>(offset + (1 << bits) - 1)},
            {"min", scale * static_cast<float>(offset)},
            {"offset", offset},
            {"scale", scale}};
}

// Per-kernel encodings of a uniform layer, or an empty array when a kernel has no 4..16-bit grid.
Json weight_encodings(const Node& layer, const LayerBits& bits, const WeightQuantizer& quantizer,
                      std::string& why_not) {
    const int64_t kernels = kernel_count(layer), per_kernel = layer.weight.numel() / kernels;
    Json channels = Json::array();
    for (int64_t k = 0; k < kernels; ++k) {
        const int b = bits.weight_bits[static_cast<size_t>(k)];
        if (b == float_bits) continue;
        if (b < min_bits) {
            why_not = "kernel " + std::to_string(k) + " has " + std::to_string(b) + " bits";
            return Json::array();
        }
        const std::span<const float> w(layer.weight.data.data() + k * per_kernel,
                                       static_cast<size_t>(per_kernel));
        channels.push_back(encoding(b, quantizer.kernel_codes(w, b).scale, -(1 << (b - 1)), true));
    }
    if (!channels.empty() && channels.size() != static_cast<size_t>(kernels)) {
        why_not = "float and quantized kernels mixed";
        return Json::array();
    }
    return channels;
}

} // namespace

AimetEncodings aimet_encodings(const Graph& folded, const BitPolicy& policy,
                               const WeightQuantizer& quantizer, const Calibration& calibration) {
    policy.validate(folded);
    AimetEncodings result;
    Json params = Json::object(), activations = Json::object();
    for (const Node* layer : quantizable_layers(folded)) {
        const LayerBits& bits = *policy.find(layer->name);
        std::string why_not = quantizer.has_integer_form()
                                  ? ""
                                  : "weight quantizer '" + quantizer.name() + "' has no uniform grid";
        Json channels =
            why_not.empty() ? weight_encodings(*layer, bits, quantizer, why_not) : Json::array();
        if (!channels.empty()) params[layer->name + ".weight"] = channels;
        if (!why_not.empty()) result.omitted.push_back(layer->name + ".weight: " + why_not);

        const int a = bits.activation_bits;
        const std::string value = folded.input == layer->inputs.at(0) ? "input" : layer->inputs.at(0);
        if (a == float_bits || activations.contains(value)) continue;
        if (a < min_bits) {
            result.omitted.push_back(layer->name + " input '" + value + "': " + std::to_string(a) +
                                     " bits");
            continue;
        }
        const bool is_signed = !calibration.is_unsigned.at(layer->inputs.at(0));
        const float scale = activation_scale(calibration.range(layer->inputs.at(0), a), a, is_signed);
        activations[value] = Json::array({encoding(a, scale, is_signed ? -(1 << (a - 1)) : 0, is_signed)});
    }
    const Json doc = {{"version", "0.6.1"},
                      {"activation_encodings", activations},
                      {"param_encodings", params},
                      {"excluded_layers", Json::array()},
                      {"quantizer_args", {{"activation_bitwidth", nullptr},
                                          {"param_bitwidth", nullptr},
                                          {"per_channel_quantization", true},
                                          {"quant_scheme", "post_training_tf"}}}};
    result.json = doc.dump(2) + "\n";
    return result;
}

} // namespace mps
