#include "evaluator/io/policy_file.h"

#include "evaluator/base/atomic_file.h"

#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"
#include "evaluator/base/sha256.h"
#include "evaluator/io/yaml_problems.h"
#include "evaluator/quant/activation_range.h"

#include <yaml-cpp/yaml.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>
#include <sstream>
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

// Reads one file in one pass, collecting every problem with its position (yaml_problems.h):
// a part that cannot be read is left out of the result and the pass goes on with the rest.
class Reader {
public:
    Reader(const std::string& path, const std::string& text, const Graph& graph)
        : graph_(graph), problems_(path, text) {}

    PolicyFile read(const std::string& model_path) {
        const YAML::Node root = problems_.parse();
        if (!root.IsMap()) {
            problems_.add(root, "the file is not a YAML mapping; a policy file starts with 'version: 1'");
            problems_.raise();
        }
        check_keys(root, {"version", "model", "quantizers", "layers", "metrics"});
        PolicyFile file;
        if (const YAML::Node version = required(root, "version")) read_version(version);
        bool same_model = true;
        if (const YAML::Node model = required(root, "model"))
            same_model = read_model(model, model_path, file);
        if (root["quantizers"]) read_quantizers(root["quantizers"], file);
        // The layers of a policy made for another model would all be problems of one mistake.
        if (const YAML::Node layers = required(root, "layers"); layers && same_model)
            file.policy = read_layers(layers);
        if (root["metrics"]) file.metrics = read_metrics(root["metrics"]);
        problems_.raise_if_any();
        return file;
    }

private:
    void problem(const YAML::Node& node, const std::string& message) { problems_.add(node, message); }

    // The value of `key`, or an undefined node and a problem at the mapping.
    YAML::Node required(const YAML::Node& map, const std::string& key) {
        YAML::Node value = map[key];
        if (!value) problem(map, "missing key '" + key + "'; see docs/policy-format.md");
        return value;
    }

    void check_keys(const YAML::Node& map, const std::set<std::string>& known) {
        std::set<std::string> seen;
        for (auto it = map.begin(); it != map.end(); ++it) {
            const std::optional<std::string> key = scalar(it->first, "a key");
            if (!key) continue;
            if (!known.count(*key)) {
                std::string list;
                for (const std::string& k : known) list += (list.empty() ? "" : ", ") + k;
                problem(it->first, "unknown key '" + *key + "'; expected one of: " + list);
            } else if (!seen.insert(*key).second) {
                problem(it->first, "key '" + *key + "' appears twice");
            }
        }
    }

    std::optional<std::string> scalar(const YAML::Node& node, const std::string& what) {
        if (node.IsScalar()) return node.Scalar();
        problem(node, what + " must be a single value");
        return std::nullopt;
    }

    // `kind` names T in the problem: "an integer", "a number".
    template <typename T>
    std::optional<T> parsed(const YAML::Node& node, const std::string& what, const char* kind) {
        const std::optional<std::string> text = scalar(node, what);
        if (!text) return std::nullopt;
        const std::optional<T> value = parse_number<T>(*text);
        if (!value) problem(node, what + " must be " + kind + ", got '" + *text + "'");
        return value;
    }
    std::optional<int64_t> integer(const YAML::Node& node, const std::string& what) {
        return parsed<int64_t>(node, what, "an integer");
    }
    std::optional<double> number(const YAML::Node& node, const std::string& what) {
        return parsed<double>(node, what, "a number");
    }

    void read_version(const YAML::Node& node) {
        const std::optional<int64_t> version = integer(node, "version");
        if (version && *version != policy_file_version)
            problem(node, "policy file version " + std::to_string(*version) +
                              " is not supported; this build reads version " +
                              std::to_string(policy_file_version));
    }

    // False when the file names another model than `model_path` (a hash mismatch).
    bool read_model(const YAML::Node& node, const std::string& model_path, PolicyFile& file) {
        if (!node.IsMap()) {
            problem(node, "'model' must be a mapping with 'path' and 'sha256'");
            return true;
        }
        check_keys(node, {"path", "sha256"});
        if (const YAML::Node path = required(node, "path"))
            file.model_path = scalar(path, "model path").value_or("");
        const YAML::Node hash = required(node, "sha256");
        const std::optional<std::string> sha256 =
            hash ? scalar(hash, "model sha256") : std::nullopt;
        if (!sha256) return true;
        file.model_sha256 = *sha256;
        const bool well_formed = sha256->size() == 64 &&
                                 sha256->find_first_not_of("0123456789abcdef") == std::string::npos;
        if (!well_formed) problem(hash, "model sha256 must be 64 lowercase hex digits");
        if (!well_formed || model_path.empty()) return true;
        const std::string actual = sha256_file(model_path);
        if (actual == *sha256) return true;
        problem(hash, "the policy was made for a model with SHA-256 " + *sha256 + " (" +
                          file.model_path + ") but " + model_path + " has SHA-256 " + actual +
                          "; use the model the policy was searched on, or search again");
        return false;
    }

    std::optional<QuantizerSpec> read_quantizer(const YAML::Node& node, const std::string& name_key,
                                                const std::string& what) {
        if (!node.IsMap()) {
            problem(node, what + " must be a mapping with '" + name_key + "' and 'args'");
            return std::nullopt;
        }
        check_keys(node, {name_key, "args"});
        QuantizerSpec spec;
        const YAML::Node name = required(node, name_key);
        const std::optional<std::string> name_text =
            name ? scalar(name, what + " " + name_key) : std::nullopt;
        bool complete = name_text.has_value();
        spec.name = name_text.value_or("");
        if (const YAML::Node args = node["args"]; args && !args.IsNull()) {
            if (!args.IsMap()) {
                problem(args, what + " args must be a mapping (name: value)");
                return std::nullopt;
            }
            for (auto it = args.begin(); it != args.end(); ++it) {
                const auto key = scalar(it->first, "an argument name");
                const auto value = scalar(it->second, "argument '" + it->first.Scalar() + "'");
                if (key && value) spec.args[*key] = *value;
                complete = complete && key && value;
            }
        }
        if (!complete) return std::nullopt;
        return spec;
    }

    // The quantizer or rule of `node` when it reads and `make` accepts it, else a problem.
    template <typename Make>
    void read_checked(const YAML::Node& node, const std::string& name_key,
                      const std::string& what, QuantizerSpec& spec, Make make) {
        const std::optional<QuantizerSpec> read = read_quantizer(node, name_key, what);
        if (!read) return;
        try {
            make(read->name, read->args);
            spec = *read;
        } catch (const Error& e) {
            problem(node, e.what());
        }
    }

    void read_quantizers(const YAML::Node& node, PolicyFile& file) {
        if (!node.IsMap()) {
            problem(node, "'quantizers' must be a mapping with 'weights' and 'activations'");
            return;
        }
        check_keys(node, {"weights", "activations"});
        if (const YAML::Node w = node["weights"])
            read_checked(w, "name", "weight quantizer", file.weight_quantizer,
                         [](const std::string& name, const QuantizerArgs& args) {
                             make_weight_quantizer(name, args);
                         });
        if (const YAML::Node a = node["activations"])
            read_checked(a, "calibration", "activation quantizer", file.activation_calibration,
                         [](const std::string& name, const QuantizerArgs& args) {
                             make_calibration(name, args);
                         });
    }

    std::optional<int> bits(const YAML::Node& node, const std::string& what, bool weight) {
        const std::optional<int64_t> b = integer(node, what);
        if (!b) return std::nullopt;
        const bool ok = *b >= -1000 && *b <= 1000 &&
                        (weight ? valid_weight_bits(static_cast<int>(*b))
                                : valid_activation_bits(static_cast<int>(*b)));
        if (ok) return static_cast<int>(*b);
        problem(node, what + " " + std::to_string(*b) + " is out of range; use " +
                          (weight ? "0 (pruned), 1..8, 16 or 32 (float)" : "1..8, 16 or 32 (float)"));
        return std::nullopt;
    }

    // Every kernel's weight bits of `layer` from `w` (one number or one per kernel).
    std::optional<std::vector<int>> read_weight_bits(const Node& layer, const YAML::Node& w,
                                                     const std::string& who) {
        const int64_t kernels = kernel_count(layer);
        if (w.IsScalar()) {
            const std::optional<int> b = bits(w, who + ": weight bit-width", true);
            if (!b) return std::nullopt;
            return std::vector<int>(static_cast<size_t>(kernels), *b);
        }
        if (!w.IsSequence()) {
            problem(w, who + ": weight_bits must be a number or a list with one number per kernel");
            return std::nullopt;
        }
        if (static_cast<int64_t>(w.size()) != kernels) {
            problem(w, who + " has " + std::to_string(kernels) + " kernels but weight_bits lists " +
                           std::to_string(w.size()) +
                           "; give one entry per kernel, or a single number for all");
            return std::nullopt;
        }
        std::vector<int> result;
        for (size_t k = 0; k < w.size(); ++k) // every bad kernel is a problem of its own
            if (const auto b = bits(w[k], who + " kernel " + std::to_string(k) +
                                              ": weight bit-width", true))
                result.push_back(*b);
        if (result.size() != w.size()) return std::nullopt;
        return result;
    }

    std::optional<LayerBits> read_layer(const Node& layer, const YAML::Node& node) {
        const std::string who = "layer '" + layer.name + "'";
        if (!node.IsMap()) {
            problem(node, who + " must be a mapping with 'activation_bits' and 'weight_bits'");
            return std::nullopt;
        }
        check_keys(node, {"activation_bits", "weight_bits"});
        const YAML::Node a = required(node, "activation_bits");
        const std::optional<int> activation =
            a ? bits(a, who + ": activation bit-width", false) : std::nullopt;
        const YAML::Node w = required(node, "weight_bits");
        const std::optional<std::vector<int>> weight =
            w ? read_weight_bits(layer, w, who) : std::nullopt;
        if (!activation || !weight) return std::nullopt;
        return LayerBits{layer.name, *activation, *weight};
    }

    // The node of layer name `key`, or a problem and nullptr.
    const Node* find_layer(const YAML::Node& key, const std::string& name) {
        const Node* layer = graph_.find_node(name);
        if (!layer)
            problem(key, "unknown layer '" + name + "': the model has no node of that name; " +
                             "quantizable layers are: " + layer_list());
        else if (!is_quantizable(*layer))
            problem(key, "layer '" + name + "' is a " + op_name(layer->op) +
                             " node; only conv and fully connected layers take bits (" +
                             layer_list() + ")");
        return layer && is_quantizable(*layer) ? layer : nullptr;
    }

    BitPolicy read_layers(const YAML::Node& node) {
        if (!node.IsMap()) {
            problem(node, "'layers' must be a mapping from layer (ONNX node) name to bits");
            return {};
        }
        std::set<std::string> given;              // layer names in the file
        std::map<std::string, LayerBits> found;   // the ones that read
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::optional<std::string> name = scalar(it->first, "a layer name");
            if (!name) continue;
            const Node* layer = find_layer(it->first, *name);
            if (!layer) continue;
            if (!given.insert(*name).second) {
                problem(it->first, "layer '" + *name + "' appears twice");
                continue;
            }
            if (auto bits = read_layer(*layer, it->second)) found.emplace(*name, std::move(*bits));
        }
        BitPolicy policy;
        std::string missing;
        for (const Node* layer : quantizable_layers(graph_)) {
            if (!given.count(layer->name))
                missing += (missing.empty() ? "'" : ", '") + layer->name + "'";
            else if (auto it = found.find(layer->name); it != found.end())
                policy.layers.push_back(it->second);
        }
        if (!missing.empty())
            problem(node, "layers " + missing + " of the model are missing; every conv and fully " +
                              "connected layer needs activation_bits and weight_bits");
        return policy;
    }

    PolicyMetrics read_metrics(const YAML::Node& node) {
        if (!node.IsMap()) {
            problem(node, "'metrics' must be a mapping");
            return {};
        }
        check_keys(node, {"accuracy", "split", "bitops", "relative_bitops", "weight_bytes",
                          "relative_weight_bytes", "macs"});
        PolicyMetrics m;
        const auto real = [&](const char* key, std::optional<double>& to) {
            if (node[key]) to = number(node[key], std::string("metrics ") + key);
        };
        const auto whole = [&](const char* key, std::optional<int64_t>& to) {
            if (node[key]) to = integer(node[key], std::string("metrics ") + key);
        };
        real("accuracy", m.accuracy);
        if (node["split"]) m.split = scalar(node["split"], "metrics split");
        whole("bitops", m.bitops);
        real("relative_bitops", m.relative_bitops);
        real("weight_bytes", m.weight_bytes);
        real("relative_weight_bytes", m.relative_weight_bytes);
        whole("macs", m.macs);
        return m;
    }

    std::string layer_list() const {
        std::string list;
        for (const Node* layer : quantizable_layers(graph_))
            list += (list.empty() ? "" : ", ") + layer->name;
        return list;
    }

    const Graph& graph_;
    YamlProblems problems_;
};

} // namespace

PolicyFile read_policy_file(const std::string& path, const Graph& graph,
                            const std::string& model_path) {
    PolicyFile file = Reader(path, read_yaml_file(path, "policy file"), graph).read(model_path);
    try {
        file.policy.validate(graph); // the reader checked every rule: this cannot fail
    } catch (const Error& e) {
        throw Error(path + ": " + e.what());
    }
    return file;
}

} // namespace mps
