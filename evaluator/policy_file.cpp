#include "evaluator/policy_file.h"

#include "evaluator/atomic_file.h"

#include "evaluator/activation_range.h"
#include "evaluator/error.h"
#include "evaluator/number_text.h"
#include "evaluator/sha256.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <set>
#include <unistd.h>

namespace mps {

PolicyMetrics metrics_from_costs(const Costs& costs) {
    PolicyMetrics m;
    m.bitops = costs.bitops;
    m.relative_bitops = costs.relative_bitops();
    m.weight_bytes = costs.weight_bytes();
    m.relative_weight_bytes = costs.relative_weight_bytes();
    m.macs = costs.macs;
    return m;
}

// ----------------------------------------------------------------------------------------------
// Writing

namespace {

void emit_quantizer(YAML::Emitter& out, const char* name_key, const QuantizerSpec& spec) {
    out << YAML::BeginMap << YAML::Key << name_key << YAML::Value << spec.name;
    out << YAML::Key << "args" << YAML::Value << YAML::Flow << YAML::BeginMap;
    for (const auto& [key, value] : spec.args) out << YAML::Key << key << YAML::Value << value;
    out << YAML::EndMap << YAML::EndMap;
}

void emit_layers(YAML::Emitter& out, const BitPolicy& policy) {
    out << YAML::BeginMap;
    for (const LayerBits& layer : policy.layers) {
        out << YAML::Key << layer.name << YAML::Value << YAML::BeginMap;
        out << YAML::Key << "activation_bits" << YAML::Value << layer.activation_bits;
        out << YAML::Key << "weight_bits" << YAML::Value;
        if (layer.uniform_weights() && !layer.weight_bits.empty()) {
            out << layer.weight_bits[0];
        } else {
            out << YAML::Flow << YAML::BeginSeq;
            for (int b : layer.weight_bits) out << b;
            out << YAML::EndSeq;
        }
        out << YAML::EndMap;
    }
    out << YAML::EndMap;
}

void emit_metrics(YAML::Emitter& out, const PolicyMetrics& m) {
    out << YAML::BeginMap;
    if (m.accuracy) out << YAML::Key << "accuracy" << YAML::Value << shortest_decimal(*m.accuracy);
    if (m.split) out << YAML::Key << "split" << YAML::Value << *m.split;
    if (m.bitops) out << YAML::Key << "bitops" << YAML::Value << *m.bitops;
    if (m.relative_bitops)
        out << YAML::Key << "relative_bitops" << YAML::Value
            << shortest_decimal(*m.relative_bitops);
    if (m.weight_bytes)
        out << YAML::Key << "weight_bytes" << YAML::Value << shortest_decimal(*m.weight_bytes);
    if (m.relative_weight_bytes)
        out << YAML::Key << "relative_weight_bytes" << YAML::Value
            << shortest_decimal(*m.relative_weight_bytes);
    if (m.macs) out << YAML::Key << "macs" << YAML::Value << *m.macs;
    out << YAML::EndMap;
}

std::string policy_yaml(const PolicyFile& file) {
    YAML::Emitter out;
    out << YAML::Comment("mpsearch bit-width policy; format: docs/policy-format.md");
    out << YAML::BeginMap;
    out << YAML::Key << "version" << YAML::Value << policy_file_version;
    out << YAML::Key << "model" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "path" << YAML::Value << file.model_path;
    out << YAML::Key << "sha256" << YAML::Value << file.model_sha256;
    out << YAML::EndMap;
    out << YAML::Key << "quantizers" << YAML::Value << YAML::BeginMap;
    out << YAML::Key << "weights" << YAML::Value;
    emit_quantizer(out, "name", file.weight_quantizer);
    out << YAML::Key << "activations" << YAML::Value;
    emit_quantizer(out, "calibration", file.activation_calibration);
    out << YAML::EndMap;
    out << YAML::Key << "layers" << YAML::Value;
    emit_layers(out, file.policy);
    if (file.metrics) {
        out << YAML::Key << "metrics" << YAML::Value;
        emit_metrics(out, *file.metrics);
    }
    out << YAML::EndMap;
    if (!out.good()) throw Error("cannot write the policy as YAML: " + out.GetLastError());
    return std::string(out.c_str()) + "\n";
}

} // namespace

void write_policy_file(const std::string& path, const PolicyFile& file) {
    write_file_atomically(path, policy_yaml(file));
}

// ----------------------------------------------------------------------------------------------
// Reading

namespace {

// Reads one file; every error names the file and the 1-based line of the offending node.
class Reader {
public:
    Reader(std::string path, const Graph& graph) : path_(std::move(path)), graph_(graph) {}

    PolicyFile read(const std::string& model_path) {
        const YAML::Node root = load();
        if (!root.IsMap())
            fail(root, "the file is not a YAML mapping; a policy file starts with 'version: 1'");
        check_keys(root, {"version", "model", "quantizers", "layers", "metrics"});
        PolicyFile file;
        read_version(required(root, "version"));
        read_model(required(root, "model"), model_path, file);
        if (root["quantizers"]) read_quantizers(root["quantizers"], file);
        file.policy = read_layers(required(root, "layers"));
        if (root["metrics"]) file.metrics = read_metrics(root["metrics"]);
        return file;
    }

private:
    YAML::Node load() {
        try {
            return YAML::LoadFile(path_);
        } catch (const YAML::BadFile&) {
            throw Error(path_ + ": cannot open the policy file; check the path");
        } catch (const YAML::Exception& e) {
            throw Error(where(e.mark) + "malformed YAML: " + e.msg);
        }
    }

    std::string where(const YAML::Mark& mark) const {
        if (mark.is_null()) return path_ + ": ";
        return path_ + ":" + std::to_string(mark.line + 1) + ": ";
    }

    [[noreturn]] void fail(const YAML::Node& node, const std::string& message) const {
        throw Error(where(node.Mark()) + message);
    }

    YAML::Node required(const YAML::Node& map, const std::string& key) const {
        YAML::Node value = map[key];
        if (!value) fail(map, "missing key '" + key + "'; see docs/policy-format.md");
        return value;
    }

    void check_keys(const YAML::Node& map, const std::set<std::string>& known) const {
        std::set<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::string key = scalar(it->first, "a key");
            if (!known.count(key)) {
                std::string list;
                for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
                fail(it->first, "unknown key '" + key + "'; expected one of: " + list);
            }
            if (!seen.insert(key).second) fail(it->first, "key '" + key + "' appears twice");
        }
    }

    std::string scalar(const YAML::Node& node, const std::string& what) const {
        if (!node.IsScalar()) fail(node, what + " must be a single value");
        return node.Scalar();
    }

    int64_t integer(const YAML::Node& node, const std::string& what) const {
        const std::string text = scalar(node, what);
        const std::optional<int64_t> value = parse_number<int64_t>(text);
        if (!value) fail(node, what + " must be an integer, got '" + text + "'");
        return *value;
    }

    double number(const YAML::Node& node, const std::string& what) const {
        const std::string text = scalar(node, what);
        const std::optional<double> value = parse_number<double>(text);
        if (!value) fail(node, what + " must be a number, got '" + text + "'");
        return *value;
    }

    void read_version(const YAML::Node& node) const {
        const int64_t version = integer(node, "version");
        if (version != policy_file_version)
            fail(node, "policy file version " + std::to_string(version) +
                           " is not supported; this build reads version " +
                           std::to_string(policy_file_version));
    }

    void read_model(const YAML::Node& node, const std::string& model_path,
                    PolicyFile& file) const {
        if (!node.IsMap()) fail(node, "'model' must be a mapping with 'path' and 'sha256'");
        check_keys(node, {"path", "sha256"});
        file.model_path = scalar(required(node, "path"), "model path");
        const YAML::Node hash = required(node, "sha256");
        file.model_sha256 = scalar(hash, "model sha256");
        const bool well_formed =
            file.model_sha256.size() == 64 &&
            file.model_sha256.find_first_not_of("0123456789abcdef") == std::string::npos;
        if (!well_formed) fail(hash, "model sha256 must be 64 lowercase hex digits");
        if (model_path.empty()) return;
        const std::string actual = sha256_file(model_path);
        if (actual != file.model_sha256)
            fail(hash, "the policy was made for a model with SHA-256 " + file.model_sha256 +
                           " (" + file.model_path + ") but " + model_path + " has SHA-256 " +
                           actual + "; use the model the policy was searched on, or search again");
    }

    QuantizerSpec read_quantizer(const YAML::Node& node, const std::string& name_key,
                                 const std::string& what) const {
        if (!node.IsMap()) fail(node, what + " must be a mapping with '" + name_key + "' and 'args'");
        check_keys(node, {name_key, "args"});
        QuantizerSpec spec;
        spec.name = scalar(required(node, name_key), what + " " + name_key);
        if (const YAML::Node args = node["args"]; args && !args.IsNull()) {
            if (!args.IsMap()) fail(args, what + " args must be a mapping (name: value)");
            for (auto it = args.begin(); it != args.end(); ++it)
                spec.args[scalar(it->first, "an argument name")] =
                    scalar(it->second, "argument '" + it->first.Scalar() + "'");
        }
        return spec;
    }

    void read_quantizers(const YAML::Node& node, PolicyFile& file) const {
        if (!node.IsMap()) fail(node, "'quantizers' must be a mapping with 'weights' and 'activations'");
        check_keys(node, {"weights", "activations"});
        if (const YAML::Node w = node["weights"]) {
            file.weight_quantizer = read_quantizer(w, "name", "weight quantizer");
            try {
                make_weight_quantizer(file.weight_quantizer.name, file.weight_quantizer.args);
            } catch (const Error& e) {
                fail(w, e.what());
            }
        }
        if (const YAML::Node a = node["activations"]) {
            file.activation_calibration = read_quantizer(a, "calibration", "activation quantizer");
            try {
                make_calibration(file.activation_calibration.name,
                                 file.activation_calibration.args);
            } catch (const Error& e) {
                fail(a, e.what());
            }
        }
    }

    int bits(const YAML::Node& node, const std::string& what, bool weight) const {
        const int64_t b = integer(node, what);
        const bool ok = weight ? valid_weight_bits(static_cast<int>(b))
                               : valid_activation_bits(static_cast<int>(b));
        if (b < -1000 || b > 1000 || !ok)
            fail(node, what + " " + std::to_string(b) + " is out of range; use " +
                           (weight ? "0 (pruned), 1..8, 16 or 32 (float)" : "1..8, 16 or 32 (float)"));
        return static_cast<int>(b);
    }

    LayerBits read_layer(const Node& layer, const YAML::Node& node) const {
        const std::string who = "layer '" + layer.name + "'";
        if (!node.IsMap())
            fail(node, who + " must be a mapping with 'activation_bits' and 'weight_bits'");
        check_keys(node, {"activation_bits", "weight_bits"});
        LayerBits result;
        result.name = layer.name;
        result.activation_bits =
            bits(required(node, "activation_bits"), who + ": activation bit-width", false);
        const YAML::Node w = required(node, "weight_bits");
        const int64_t kernels = kernel_count(layer);
        if (w.IsScalar()) {
            result.weight_bits.assign(static_cast<size_t>(kernels),
                                      bits(w, who + ": weight bit-width", true));
        } else if (w.IsSequence()) {
            if (static_cast<int64_t>(w.size()) != kernels)
                fail(w, who + " has " + std::to_string(kernels) + " kernels but weight_bits lists " +
                            std::to_string(w.size()) +
                            "; give one entry per kernel, or a single number for all");
            for (size_t k = 0; k < w.size(); ++k)
                result.weight_bits.push_back(
                    bits(w[k], who + " kernel " + std::to_string(k) + ": weight bit-width", true));
        } else {
            fail(w, who + ": weight_bits must be a number or a list with one number per kernel");
        }
        return result;
    }

    BitPolicy read_layers(const YAML::Node& node) const {
        if (!node.IsMap()) fail(node, "'layers' must be a mapping from layer (ONNX node) name to bits");
        std::map<std::string, LayerBits> found;
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string name = scalar(it->first, "a layer name");
            const Node* layer = graph_.find_node(name);
            if (!layer)
                fail(it->first, "unknown layer '" + name + "': the model has no node of that name; " +
                                    "quantizable layers are: " + layer_list());
            if (!is_quantizable(*layer))
                fail(it->first, "layer '" + name + "' is a " + op_name(layer->op) +
                                    " node; only conv and fully connected layers take bits (" +
                                    layer_list() + ")");
            if (found.count(name)) fail(it->first, "layer '" + name + "' appears twice");
            found[name] = read_layer(*layer, it->second);
        }
        BitPolicy policy;
        std::string missing;
        for (const Node* layer : quantizable_layers(graph_)) {
            auto it = found.find(layer->name);
            if (it == found.end())
                missing += (missing.empty() ? "'" : ", '") + layer->name + "'";
            else
                policy.layers.push_back(it->second);
        }
        if (!missing.empty())
            fail(node, "layers " + missing + " of the model are missing; every conv and fully " +
                           "connected layer needs activation_bits and weight_bits");
        policy.validate(graph_);
        return policy;
    }

    PolicyMetrics read_metrics(const YAML::Node& node) const {
        if (!node.IsMap()) fail(node, "'metrics' must be a mapping");
        check_keys(node, {"accuracy", "split", "bitops", "relative_bitops", "weight_bytes",
                          "relative_weight_bytes", "macs"});
        PolicyMetrics m;
        if (node["accuracy"]) m.accuracy = number(node["accuracy"], "metrics accuracy");
        if (node["split"]) m.split = scalar(node["split"], "metrics split");
        if (node["bitops"]) m.bitops = integer(node["bitops"], "metrics bitops");
        if (node["relative_bitops"])
            m.relative_bitops = number(node["relative_bitops"], "metrics relative_bitops");
        if (node["weight_bytes"]) m.weight_bytes = number(node["weight_bytes"], "metrics weight_bytes");
        if (node["relative_weight_bytes"])
            m.relative_weight_bytes =
                number(node["relative_weight_bytes"], "metrics relative_weight_bytes");
        if (node["macs"]) m.macs = integer(node["macs"], "metrics macs");
        return m;
    }

    std::string layer_list() const {
        std::string list;
        for (const Node* layer : quantizable_layers(graph_))
            list += (list.empty() ? "" : ", ") + layer->name;
        return list;
    }

    std::string path_;
    const Graph& graph_;
};

} // namespace

PolicyFile read_policy_file(const std::string& path, const Graph& graph,
                            const std::string& model_path) {
    return Reader(path, graph).read(model_path);
}

} // namespace mps
