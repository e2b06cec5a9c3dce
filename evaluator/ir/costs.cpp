#include "evaluator/ir/costs.h"

#include "evaluator/base/error.h"

#include <algorithm>

namespace mps {

int64_t kernel_macs(const Graph& graph, const Node& node) {
    const int64_t kernels = kernel_count(node);
    return kernels ? node_macs(graph, node) / kernels : 0;
}

namespace {

constexpr int64_t fp32 = float_bits;

// Quantized kernels carry one float scale; pruned (0) and float (32) kernels do not.
bool has_scale(int bits) { return bits >= 1 && bits <= 16; }

} // namespace

KernelShape kernel_shape(const Graph& graph, const Node& node) {
    const int64_t kernels = kernel_count(node);
    return {kernel_macs(graph, node), kernels ? node.weight.numel() / kernels : 0};
}

KernelCosts kernel_costs(const KernelShape& kernel, int weight_bits, int activation_bits) {
    KernelCosts c;
    c.bitops = kernel.macs * weight_bits * activation_bits;
    c.weight_bits = kernel.weights * weight_bits + (has_scale(weight_bits) ? fp32 : 0);
    c.unpruned_macs = weight_bits > 0 ? kernel.macs : 0;
    return c;
}

int64_t bias_bits(const Node& node) { return node.bias.numel() * fp32; }

namespace {

LayerCosts layer_costs(const Graph& graph, const Node& node, const LayerBits& bits) {
    LayerCosts c;
    c.name = node.name;
    c.kernels = kernel_count(node);
    const KernelShape kernel = kernel_shape(graph, node);
    c.kernel_macs = kernel.macs;
    c.macs = c.kernel_macs * c.kernels;
    for (int b : bits.weight_bits) {
        const KernelCosts k = kernel_costs(kernel, b, bits.activation_bits);
        c.unpruned_macs += k.unpruned_macs;
        c.bitops += k.bitops;
        c.weight_bits += k.weight_bits;
    }
    c.weight_bits += bias_bits(node);
    return c;
}

// Storage bits of every value: the widest precision any reader needs (see costs.h).
std::map<std::string, int> storage_bits(const Graph& graph, const BitPolicy& policy) {
    std::map<std::string, int> bits;
    auto need = [&bits](const std::string& value, int b) {
        auto [it, inserted] = bits.emplace(value, b);
        if (!inserted) it->second = std::max(it->second, b);
    };
    for (const Node& node : graph.nodes) {
        const LayerBits* layer = is_quantizable(node) ? policy.find(node.name) : nullptr;
        for (const std::string& v : node.inputs) need(v, layer ? layer->activation_bits : 32);
    }
    need(graph.output, 32);
    return bits;
}

} // namespace

int64_t peak_activation_bits(const Graph& graph, const std::map<std::string, int>& value_bits) {
    const int steps = static_cast<int>(graph.nodes.size());
    std::map<std::string, std::pair<int, int>> live; // value -> [first step, last step]
    live[graph.input] = {0, 0};
    for (int i = 0; i < steps; ++i) {
        const Node& node = graph.nodes[static_cast<size_t>(i)];
        for (const std::string& v : node.inputs) {
            auto it = live.find(v);
            if (it == live.end())
                throw Error("peak_activation_bits: node '" + node.name + "' reads value '" + v +
                            "' that no earlier node produces");
            it->second.second = std::max(it->second.second, i);
        }
        live[node.output] = {i, i};
    }
    if (auto it = live.find(graph.output); it != live.end())
        it->second.second = std::max(0, steps - 1);
    std::vector<int64_t> memory(static_cast<size_t>(std::max(steps, 1)), 0);
    for (const auto& [value, span] : live) {
        auto shape = graph.shapes.find(value);
        if (shape == graph.shapes.end())
            throw Error("peak_activation_bits: value '" + value +
                        "' has no shape; run infer_shapes() first");
        auto b = value_bits.find(value);
        const int64_t bits = Tensor::count(shape->second) * (b == value_bits.end() ? fp32 : b->second);
        for (int i = span.first; i <= span.second; ++i) memory[static_cast<size_t>(i)] += bits;
    }
    return *std::max_element(memory.begin(), memory.end());
}

Costs compute_costs(const Graph& graph, const BitPolicy& policy) {
    for (const Node* node : quantizable_layers(graph))
        if (!graph.shapes.count(node->output))
            throw Error("compute_costs: layer '" + node->name +
                        "' has no output shape; run infer_shapes() on the graph first");
    policy.validate(graph);
    Costs costs;
    for (const LayerBits& bits : policy.layers) {
        const Node& node = *graph.find_node(bits.name);
        LayerCosts layer = layer_costs(graph, node, bits);
        costs.macs += layer.macs;
        costs.bitops += layer.bitops;
        costs.weight_bits += layer.weight_bits;
        costs.flops += 2 * layer.unpruned_macs;
        costs.fp32_weight_bits += (node.weight.numel() + node.bias.numel()) * fp32;
        costs.layers.push_back(std::move(layer));
    }
    costs.fp32_bitops = costs.macs * fp32 * fp32;
    costs.fp32_flops = 2 * costs.macs;
    costs.peak_activation_bits = peak_activation_bits(graph, storage_bits(graph, policy));
    costs.fp32_peak_activation_bits = peak_activation_bits(graph, {});
    return costs;
}

} // namespace mps
