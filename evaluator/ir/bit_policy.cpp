#include "evaluator/ir/bit_policy.h"

#include "evaluator/base/error.h"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace mps {

bool valid_weight_bits(int bits) { return (bits >= 0 && bits <= 8) || bits == 16 || bits == 32; }

bool valid_activation_bits(int bits) {
    return (bits >= 1 && bits <= 8) || bits == 16 || bits == 32;
}

std::vector<const Node*> quantizable_layers(const Graph& graph) {
    std::vector<const Node*> layers;
    for (const Node& node : graph.nodes)
        if (is_quantizable(node)) layers.push_back(&node);
    return layers;
}

int64_t kernel_count(const Node& node) {
    return node.weight.dims.empty() ? 0 : node.weight.dims[0];
}

bool LayerBits::uniform_weights() const {
    return std::adjacent_find(weight_bits.begin(), weight_bits.end(), std::not_equal_to<>()) ==
           weight_bits.end();
}

namespace {

void check_weight_bits(int bits, const std::string& where) {
    if (!valid_weight_bits(bits))
        throw Error(where + ": weight bit-width " + std::to_string(bits) +
                    " is out of range; use 0 (pruned), 1..8, 16 or 32 (float)");
}

void check_activation_bits(int bits, const std::string& where) {
    if (!valid_activation_bits(bits))
        throw Error(where + ": activation bit-width " + std::to_string(bits) +
                    " is out of range; use 1..8, 16 or 32 (float)");
}

// Parses the digits at text[pos...]; returns -1 when there are none (or too many).
int parse_number(const std::string& text, size_t& pos) {
    const size_t start = pos;
    int value = 0;
    while (pos < text.size() && std::isdigit(static_cast<unsigned char>(text[pos])) &&
           pos - start < 3)
        value = value * 10 + (text[pos++] - '0');
    return pos == start ? -1 : value;
}

} // namespace

UniformBits parse_uniform_bits(const std::string& text) {
    const std::string usage =
        "uniform policy '" + text + "' is not of the form W<bits>A<bits> (e.g. W4A8, W32A32)";
    size_t pos = 0;
    if (text.empty() || std::toupper(static_cast<unsigned char>(text[pos])) != 'W')
        throw Error(usage);
    ++pos;
    const int w = parse_number(text, pos);
    if (w < 0 || pos >= text.size() || std::toupper(static_cast<unsigned char>(text[pos])) != 'A')
        throw Error(usage);
    ++pos;
    const int a = parse_number(text, pos);
    if (a < 0 || pos != text.size()) throw Error(usage);
    check_weight_bits(w, "uniform policy '" + text + "'");
    check_activation_bits(a, "uniform policy '" + text + "'");
    return {w, a};
}

std::string uniform_bits_name(const UniformBits& bits) {
    return "W" + std::to_string(bits.weight_bits) + "A" + std::to_string(bits.activation_bits);
}

BitPolicy BitPolicy::uniform(const Graph& graph, int weight_bits, int activation_bits) {
    const auto layers = quantizable_layers(graph);
    return per_layer(graph, std::vector<UniformBits>(layers.size(), {weight_bits, activation_bits}));
}

BitPolicy BitPolicy::uniform(const Graph& graph, const std::string& spec) {
    const UniformBits bits = parse_uniform_bits(spec);
    return uniform(graph, bits.weight_bits, bits.activation_bits);
}

BitPolicy BitPolicy::per_layer(const Graph& graph, const std::vector<UniformBits>& bits) {
    const auto layers = quantizable_layers(graph);
    if (bits.size() != layers.size())
        throw Error("per-layer policy has " + std::to_string(bits.size()) +
                    " entries but the model has " + std::to_string(layers.size()) +
                    " quantizable layers; give one (weight, activation) pair per layer");
    BitPolicy policy;
    for (size_t i = 0; i < layers.size(); ++i) {
        const std::string where = "layer '" + layers[i]->name + "'";
        check_weight_bits(bits[i].weight_bits, where);
        check_activation_bits(bits[i].activation_bits, where);
        policy.layers.push_back(
            {layers[i]->name, bits[i].activation_bits,
             std::vector<int>(static_cast<size_t>(kernel_count(*layers[i])),
                              bits[i].weight_bits)});
    }
    return policy;
}

const LayerBits* BitPolicy::find(const std::string& name) const {
    for (const LayerBits& l : layers)
        if (l.name == name) return &l;
    return nullptr;
}

LayerBits* BitPolicy::find(const std::string& name) {
    for (LayerBits& l : layers)
        if (l.name == name) return &l;
    return nullptr;
}

void BitPolicy::validate(const Graph& graph) const {
    const auto expected = quantizable_layers(graph);
    for (size_t i = 0; i < layers.size(); ++i) {
        const LayerBits& layer = layers[i];
        const Node* node = graph.find_node(layer.name);
        if (!node)
            throw Error("policy names layer '" + layer.name +
                        "', which is not a node of the model; use the ONNX node names of its "
                        "conv and fully connected layers");
        if (!is_quantizable(*node))
            throw Error("policy names layer '" + layer.name + "', which is a " +
                        op_name(node->op) +
                        " node; only conv and fully connected layers take bit-widths");
        for (size_t j = 0; j < i; ++j)
            if (layers[j].name == layer.name)
                throw Error("policy names layer '" + layer.name + "' twice; give it once");
    }
    for (size_t i = 0; i < expected.size(); ++i) {
        if (!find(expected[i]->name))
            throw Error("policy has no entry for layer '" + expected[i]->name +
                        "'; every conv and fully connected layer needs bit-widths");
    }
    // Same set, no duplicates, same size: only the order can still differ.
    for (size_t i = 0; i < expected.size(); ++i)
        if (layers[i].name != expected[i]->name)
            throw Error("policy lists layer '" + layers[i].name + "' at position " +
                        std::to_string(i + 1) + " but the model's layer there is '" +
                        expected[i]->name + "'; keep the model's layer order");
    for (size_t i = 0; i < expected.size(); ++i) {
        const LayerBits& layer = layers[i];
        const std::string where = "layer '" + layer.name + "'";
        check_activation_bits(layer.activation_bits, where);
        const int64_t kernels = kernel_count(*expected[i]);
        if (static_cast<int64_t>(layer.weight_bits.size()) != kernels)
            throw Error(where + ": policy gives " + std::to_string(layer.weight_bits.size()) +
                        " weight bit-widths but the layer has " + std::to_string(kernels) +
                        " kernels; give one per kernel (output channel)");
        for (size_t k = 0; k < layer.weight_bits.size(); ++k)
            check_weight_bits(layer.weight_bits[k], where + " kernel " + std::to_string(k));
    }
}

namespace {

// "4x16" for a run of 16 fours, "4" for a single one.
void append_runs(std::ostringstream& out, const std::vector<int>& bits) {
    for (size_t i = 0; i < bits.size();) {
        size_t j = i;
        while (j < bits.size() && bits[j] == bits[i]) ++j;
        if (i) out << ',';
        out << bits[i];
        if (j - i > 1) out << 'x' << (j - i);
        i = j;
    }
}

} // namespace

std::string BitPolicy::to_string() const {
    if (layers.empty()) return "(no layers)";
    const LayerBits& first = layers.front();
    const bool all_same = std::all_of(layers.begin(), layers.end(), [&](const LayerBits& l) {
        return l.uniform_weights() && l.activation_bits == first.activation_bits &&
               (l.weight_bits.empty() || first.weight_bits.empty() ||
                l.weight_bits[0] == first.weight_bits[0]);
    });
    if (all_same && !first.weight_bits.empty())
        return uniform_bits_name({first.weight_bits[0], first.activation_bits});
    std::ostringstream out;
    for (size_t i = 0; i < layers.size(); ++i) {
        const LayerBits& l = layers[i];
        if (i) out << ' ';
        out << l.name << ":A" << l.activation_bits << 'W';
        if (l.uniform_weights() && !l.weight_bits.empty()) {
            out << l.weight_bits[0] << 'x' << l.weight_bits.size();
        } else {
            out << '[';
            append_runs(out, l.weight_bits);
            out << ']';
        }
    }
    return out.str();
}

std::size_t BitPolicy::hash() const {
    // FNV-1a over names and bit-widths: the same value in every run and on every platform.
    uint64_t h = 1469598103934665603ULL;
    auto mix = [&h](uint64_t v) {
        h ^= v;
        h *= 1099511628211ULL;
    };
    for (const LayerBits& l : layers) {
        for (char c : l.name) mix(static_cast<unsigned char>(c));
        mix(0x100 + static_cast<uint64_t>(l.activation_bits));
        mix(0x200 + l.weight_bits.size());
        for (int b : l.weight_bits) mix(static_cast<uint64_t>(b));
    }
    return static_cast<std::size_t>(h);
}

} // namespace mps
