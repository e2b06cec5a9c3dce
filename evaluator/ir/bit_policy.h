#pragma once
// BitPolicy: the bit-widths a mixed-precision candidate assigns to a model.
//
// For every quantizable layer (conv and fully_connected, see is_quantizable) in graph order:
//   - activation_bits: the bit-width of the layer's input tensor, in {1..8, 16, 32};
//     32 means float (not quantized);
//   - weight_bits: one bit-width per kernel (= output channel), in {0..8, 16, 32};
//     0 means the kernel is pruned (its weights become zero, its bias stays), 32 means float.
// The quantization functions these numbers select are in docs/semantics.md ("Weights",
// "Activations"), quantizer.h and activation_range.h.
//
// BitPolicy is a plain value: copy it, compare it, hash it (it keys evaluation caches). It does not
// reference the graph; validate() checks it against one.
#include "evaluator/ir/graph.h"

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace mps {

inline constexpr int float_bits = 32;

// Allowed bit-widths: weights {0..8, 16, 32}, activations {1..8, 16, 32}.
bool valid_weight_bits(int bits);
bool valid_activation_bits(int bits);

// The quantizable layers (conv, fully_connected) of `graph` in graph order.
std::vector<const Node*> quantizable_layers(const Graph& graph);
// Number of kernels (output channels) of a conv / fully_connected node: weight.dims[0].
int64_t kernel_count(const Node& node);

struct LayerBits {
    std::string name;             // node name (the ONNX node name)
    int activation_bits = float_bits;
    std::vector<int> weight_bits; // one entry per kernel

    bool operator==(const LayerBits&) const = default;
    // True when every kernel has the same bit-width (vacuously true for no kernels).
    bool uniform_weights() const;
};

// "W4A8" -> {4, 8}. Case-insensitive; throws mps::Error on anything else or on a bit-width out of
// range (weights 0..8/16/32, activations 1..8/16/32).
struct UniformBits {
    int weight_bits = float_bits;
    int activation_bits = float_bits;
};
UniformBits parse_uniform_bits(const std::string& text);
// {4, 8} -> "W4A8": the form parse_uniform_bits reads.
std::string uniform_bits_name(const UniformBits& bits);

struct BitPolicy {
    std::vector<LayerBits> layers; // quantizable layers, graph order

    // Every kernel at `weight_bits`, every layer input at `activation_bits` (ranges checked).
    static BitPolicy uniform(const Graph& graph, int weight_bits, int activation_bits);
    // From a "W4A8"-style string (parse_uniform_bits).
    static BitPolicy uniform(const Graph& graph, const std::string& spec);
    // One (weight_bits, activation_bits) pair per quantizable layer, in graph order; all kernels
    // of a layer get that layer's weight bits. Throws when the count differs from the graph's.
    static BitPolicy per_layer(const Graph& graph, const std::vector<UniformBits>& bits);

    // The entry for node `name`, or nullptr.
    const LayerBits* find(const std::string& name) const;
    LayerBits* find(const std::string& name);

    // Throws mps::Error unless the policy names exactly the graph's quantizable layers in graph
    // order, with one weight bit-width per kernel and every bit-width in range. The message names
    // the layer, the problem and the fix.
    void validate(const Graph& graph) const;

    // Compact, human-readable and unambiguous form for logs, e.g.
    //   "conv0:A8W4x16 fc3:A8W[4x3,2,0x6]"
    // (per layer: activation bits, then weight bits, run-length encoded as `bits x count`).
    // A policy whose layers all share one uniform setting prints as "W4A8".
    std::string to_string() const;

    std::size_t hash() const;
    bool operator==(const BitPolicy&) const = default;
};

} // namespace mps

template <>
struct std::hash<mps::BitPolicy> {
    std::size_t operator()(const mps::BitPolicy& p) const noexcept { return p.hash(); }
};
