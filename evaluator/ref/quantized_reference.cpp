#include "evaluator/ref/quantized_reference.h"

#include "evaluator/base/error.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/ref/reference.h"

#include <map>

namespace mps {

Tensor reference_quantized_forward(const Graph& folded, const Tensor& input,
                                   const BitPolicy& policy, const WeightQuantizer& quantizer,
                                   const Calibration& calibration) {
    policy.validate(folded);
    std::map<std::string, Tensor> values;
    values[folded.input] = input;
    for (const Node& node : folded.nodes) {
        std::vector<const Tensor*> inputs;
        for (const std::string& name : node.inputs) {
            auto it = values.find(name);
            if (it == values.end())
                throw Error("reference_quantized_forward: node '" + node.name + "' reads '" +
                            name + "', which no earlier node produces");
            inputs.push_back(&it->second);
        }
        if (!is_quantizable(node)) {
            values[node.output] = reference_node(node, inputs);
            continue;
        }
        const LayerBits& bits = *policy.find(node.name);
        const std::string& value = node.inputs.at(0);
        Tensor x = *inputs[0];
        const bool is_signed = !calibration.is_unsigned.at(value);
        if (bits.activation_bits != float_bits)
            fake_quantize_activation(x.data.data(), x.numel(),
                                     calibration.range(value, bits.activation_bits),
                                     bits.activation_bits, is_signed);
        Node quantized = node;
        quantized.weight = quantize_weights(quantizer, node.weight, bits.weight_bits);
        values[node.output] = reference_node(quantized, {&x});
    }
    return reference_flatten(values.at(folded.output));
}

} // namespace mps
