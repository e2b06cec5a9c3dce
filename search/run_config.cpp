// Reading a run configuration: one pass over the YAML tree that collects every problem (with its
// 1-based position and key path) instead of stopping at the first, then the checks that need the
// model (pins, "W4A4" limits, the cheapest policy of the space). docs/config.md is the user's view.
#include "search/run_config.h"

#include "evaluator/base/number_text.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/yaml_problems.h"
#include "evaluator/ir/costs.h"
#include "evaluator/quant/activation_range.h"

#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>

namespace mps {

// ----------------------------------------------------------------------------------------------
// Suggestions

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
    // One row of the Levenshtein table at a time.
    std::vector<size_t> row(b.size() + 1);
    for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
    for (size_t i = 1; i <= a.size(); ++i) {
        size_t diagonal = row[0];
        row[0] = i;
        for (size_t j = 1; j <= b.size(); ++j) {
            const size_t substitution = diagonal + (a[i - 1] == b[j - 1] ? 0 : 1);
            diagonal = row[j];
            row[j] = std::min({row[j] + 1, row[j - 1] + 1, substitution});
        }
    }
    return row[b.size()];
}

} // namespace

std::string did_you_mean(const std::string& word, std::span<const std::string> candidates) {
    const size_t limit = std::max<size_t>(1, word.size() / 3);
    std::string best;
    size_t best_distance = limit + 1;
    for (const std::string& candidate : candidates) {
        const size_t d = edit_distance(word, candidate);
        if (d < best_distance) {
            best = candidate;
            best_distance = d;
        }
    }
    return best;
}

namespace {

std::string join(const std::vector<std::string>& items, const std::string& separator = ", ") {
    std::string text;
    for (const std::string& item : items) text += (text.empty() ? "" : separator) + item;
    return text;
}

// "did you mean 'x'? " when a candidate is close, else nothing.
std::string suggestion(const std::string& word, const std::vector<std::string>& candidates) {
    const std::string close = did_you_mean(word, candidates);
    return close.empty() ? "" : "did you mean '" + close + "'? ";
}

// `v` (> 0) rounded up to 4 significant digits: short, and still a limit that can be met.
std::string rounded_up_text(double v) {
    if (!(v > 0)) return shortest_decimal(v);
    const double step = std::pow(10.0, std::floor(std::log10(v)) - 3);
    char text[64];
    std::snprintf(text, sizeof text, "%.4g", std::ceil(v / step) * step);
    return text;
}

std::string short_text(double v) {
    char text[64];
    std::snprintf(text, sizeof text, "%.4g", v);
    return text;
}

bool is_zoo_name(const std::string& model) {
    return model.find('/') == std::string::npos &&
           !(model.size() >= 5 && model.compare(model.size() - 5, 5, ".onnx") == 0);
}

std::string models_dir() {
    if (const char* env = std::getenv("MPSEARCH_MODELS"); env && *env) return env;
    return MPSEARCH_MODELS_DIR;
}

// The stems of the .onnx files in `dir`, sorted.
std::vector<std::string> zoo_models(const std::string& dir) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : std::filesystem::directory_iterator(dir, ec))
        if (entry.path().extension() == ".onnx") names.push_back(entry.path().stem().string());
    std::sort(names.begin(), names.end());
    return names;
}

std::vector<std::string> layer_names(const Graph& graph) {
    std::vector<std::string> names;
    for (const Node* layer : quantizable_layers(graph)) names.push_back(layer->name);
    return names;
}

// ----------------------------------------------------------------------------------------------
// The reader

// A value in the tree with where it is and how to name it.
struct Field {
    YAML::Node node;
    YAML::Mark mark;     // of the value; of its key when the value is empty (null)
    std::string path;    // "bits.weights[2]"
    YAML::Mark key_mark; // of its key (a list element: of the element)
};

// The fields of one mapping by key, plus where the mapping itself is (for missing keys).
struct Fields {
    std::map<std::string, Field> by_key;
    YAML::Mark mark;
    std::string path;

    const Field* get(const std::string& key) const {
        auto it = by_key.find(key);
        return it == by_key.end() ? nullptr : &it->second;
    }
};

std::string child_path(const std::string& parent, const std::string& key) {
    return parent.empty() ? key : parent + "." + key;
}

std::string node_kind(const YAML::Node& node) {
    if (node.IsMap()) return "a mapping";
    if (node.IsSequence()) return "a list";
    if (node.IsNull()) return "nothing";
    return "'" + node.Scalar() + "'";
}

// Where a limit in `constraints` came from, for the check against the cheapest policy.
struct Limit {
    double value = 0;
    YAML::Mark mark;
    std::string path;
    std::string as_written;
};

class ConfigReader {
public:
    ConfigReader(const std::string& text, const std::string& name) : problems_(name, text) {
        config_.source_path = name;
        config_.source_text = text;
    }

    RunConfig read() {
        const YAML::Node root = problems_.parse();
        if (!root.IsMap()) {
            YAML::Mark start;
            problem(root.IsNull() ? start : root.Mark(), "",
                    "the file is " + (root.IsNull() ? std::string("empty") : node_kind(root)) +
                        ", not a mapping of keys; start from configs/quickstart.yaml");
            problems_.raise();
        }
        const Fields top = fields(root, YAML::Mark(), "",
                                  {"model", "data", "quantizers", "granularity", "bits", "pinned",
                                   "constraints", "objective", "baselines", "policy", "budget",
                                   "seed", "workers", "output"});
        read_model(top);
        read_data(top.get("data"));
        read_quantizers(top.get("quantizers"));
        read_granularity(top.get("granularity"));
        read_bits(top.get("bits"));
        read_pinned(top.get("pinned"));
        std::vector<Limit> limits = read_constraints(top.get("constraints"));
        if (model_loaded_) check_floors(limits);
        read_objective(top.get("objective"));
        read_baselines(top.get("baselines"));
        read_policy(top);
        read_budget(top.get("budget"));
        if (const Field* f = top.get("seed"))
            if (auto seed = unsigned_integer(*f)) config_.seed = *seed;
        if (const Field* f = top.get("workers"))
            if (auto workers = integer(*f, 1, 256, "e.g. the number of cores"))
                config_.workers = static_cast<int>(*workers);
        read_output(top.get("output"));
        problems_.raise_if_any();
        return std::move(config_);
    }

    // A file holding a `data` block only: the same reader, against `graph`.
    RunConfig read_data_only(const Graph& graph) {
        const YAML::Node root = problems_.parse();
        if (!root.IsMap()) {
            problem(root.IsNull() ? YAML::Mark() : root.Mark(), "",
                    "expected a mapping with a data block, e.g. 'data: {test: images/}'");
            problems_.raise();
        }
        const Fields top = fields(root, YAML::Mark(), "", {"data"});
        config_.graph = graph;
        model_loaded_ = true;
        read_data(top.get("data"));
        if (!top.get("data")) missing(top, "data", "e.g. 'data: {test: images/}'");
        problems_.raise_if_any();
        return std::move(config_);
    }

private:
    // --- problems ---

    void problem(const YAML::Mark& mark, const std::string& path, const std::string& message) {
        problems_.add(mark, path, message);
    }
    void problem(const Field& f, const std::string& message) { problem(f.mark, f.path, message); }

    // --- structure ---

    // The entries of mapping `node`; unknown keys (with a suggestion) and repeated keys are
    // problems. A null node (`pinned:` with nothing after it) is an empty mapping.
    Fields fields(const YAML::Node& node, const YAML::Mark& mark, const std::string& path,
                  const std::vector<std::string>& known) {
        Fields result;
        result.mark = node.IsNull() ? mark : node.Mark();
        result.path = path;
        for (auto it = node.begin(); it != node.end(); ++it) {
            const std::string key = it->first.IsScalar() ? it->first.Scalar() : "";
            const std::string key_path = child_path(path, key);
            if (!it->first.IsScalar()) {
                problem(it->first.Mark(), path, "a key must be a plain name, not " +
                                                    node_kind(it->first) + "; see docs/config.md");
                continue;
            }
            if (!known.empty() && std::find(known.begin(), known.end(), key) == known.end()) {
                problem(it->first.Mark(), key_path,
                        "unknown key '" + key + "'; " + suggestion(key, known) +
                            "known keys" + (path.empty() ? "" : " of " + path) + ": " +
                            join(known));
                continue;
            }
            if (result.by_key.count(key)) {
                problem(it->first.Mark(), key_path,
                        "key '" + key + "' appears twice; keep one");
                continue;
            }
            const YAML::Node value = it->second;
            result.by_key[key] = Field{value, value.IsNull() ? it->first.Mark() : value.Mark(),
                                       key_path, it->first.Mark()};
        }
        return result;
    }

    // The fields of `f` when it is a mapping (or empty), else a problem and nullopt.
    std::optional<Fields> mapping(const Field& f, const std::vector<std::string>& known,
                                  const std::string& example) {
        if (!f.node.IsMap() && !f.node.IsNull()) {
            problem(f, "expected a mapping, got " + node_kind(f.node) + "; write it as " + example);
            return std::nullopt;
        }
        return fields(f.node, f.mark, f.path, known);
    }

    void missing(const Fields& parent, const std::string& key, const std::string& fix) {
        problem(parent.mark, child_path(parent.path, key),
                "missing required key '" + key + "'; " + fix);
    }

    // --- scalars ---

    std::optional<std::string> text(const Field& f, const std::string& what) {
        if (f.node.IsScalar() && !f.node.Scalar().empty()) return f.node.Scalar();
        problem(f, "expected " + what + ", got " + node_kind(f.node));
        return std::nullopt;
    }

    std::optional<int64_t> integer(const Field& f, int64_t lo, int64_t hi, const std::string& fix) {
        const std::string range = hi == std::numeric_limits<int64_t>::max()
                                      ? "an integer >= " + std::to_string(lo)
                                      : "an integer in [" + std::to_string(lo) + ", " +
                                            std::to_string(hi) + "]";
        if (!f.node.IsScalar()) {
            problem(f, "expected " + range + ", got " + node_kind(f.node) + "; " + fix);
            return std::nullopt;
        }
        const std::string& s = f.node.Scalar();
        std::optional<int64_t> value = parse_number<int64_t>(s);
        if (const auto real = parse_number<double>(s);
            !value && real && *real == std::floor(*real) && std::fabs(*real) < 9.0e18)
            value = static_cast<int64_t>(*real); // 1e6 is an integer too
        if (!value || *value < lo || *value > hi) {
            problem(f, "expected " + range + ", got '" + s + "'; " + fix);
            return std::nullopt;
        }
        return value;
    }

    std::optional<uint64_t> unsigned_integer(const Field& f) {
        if (f.node.IsScalar())
            if (const auto value = parse_number<uint64_t>(f.node.Scalar())) return value;
        problem(f, "expected an integer in [0, 2^64 - 1], got " + node_kind(f.node) +
                       "; use any non-negative integer, e.g. 1");
        return std::nullopt;
    }

    // A number > lo (or >= lo when `inclusive`) and <= hi.
    std::optional<double> number(const Field& f, double lo, bool inclusive, double hi,
                                 const std::string& fix) {
        std::string range =
            "a number " + std::string(inclusive ? ">= " : "> ") + shortest_decimal(lo);
        if (std::isfinite(hi)) range += " and <= " + shortest_decimal(hi);
        const std::optional<double> value =
            f.node.IsScalar() ? parse_number<double>(f.node.Scalar()) : std::nullopt;
        if (!value || (inclusive ? *value < lo : *value <= lo) || *value > hi) {
            problem(f, "expected " + range + ", got " + node_kind(f.node) + "; " + fix);
            return std::nullopt;
        }
        return value;
    }

    std::optional<bool> boolean(const Field& f) {
        bool value = false;
        if (f.node.IsScalar() && YAML::convert<bool>::decode(f.node, value)) return value;
        problem(f, "expected true or false, got " + node_kind(f.node) + "; write true or false");
        return std::nullopt;
    }

    // One of `names` (a suggestion when it is close), else a problem.
    std::optional<std::string> choice(const Field& f, const std::vector<std::string>& names,
                                      const std::string& what) {
        auto name = text(f, what + " (one of " + join(names) + ")");
        if (!name) return std::nullopt;
        if (std::find(names.begin(), names.end(), *name) != names.end()) return name;
        problem(f, "unknown " + what + " '" + *name + "'; " + suggestion(*name, names) +
                       "use one of: " + join(names));
        return std::nullopt;
    }

    // "W4A8": weights 1..8/16/32 (a whole layer is never pruned), activations 1..8/16/32.
    std::optional<UniformBits> uniform_bits(const Field& f) {
        auto spec = text(f, "a uniform bit setting such as W4A8");
        if (!spec) return std::nullopt;
        try {
            UniformBits bits = parse_uniform_bits(*spec);
            if (bits.weight_bits == 0) {
                problem(f, "'" + *spec + "' prunes every weight; use weight bits 1..8, 16 or 32");
                return std::nullopt;
            }
            return bits;
        } catch (const Error& e) {
            problem(f, e.what());
            return std::nullopt;
        }
    }

    // --- sections ---

    void read_model(const Fields& top) {
        const Field* f = top.get("model");
        if (!f) {
            missing(top, "model", "name a zoo model (lenet5, vgg_small, resnet8, mobilenet_tiny) "
                                  "or an .onnx file, e.g. 'model: resnet8'");
            return;
        }
        auto model = text(*f, "a zoo model name or the path of an .onnx file");
        if (!model) return;
        config_.model = *model;
        if (is_zoo_name(*model)) {
            const std::string dir = models_dir();
            config_.model_path = dir + "/" + *model + ".onnx";
            if (!std::filesystem::exists(config_.model_path)) {
                const std::vector<std::string> zoo = zoo_models(dir);
                problem(*f, "no zoo model '" + *model + "' in " + dir + "; " +
                                suggestion(*model, zoo) + "zoo models: " + join(zoo) +
                                "; or give the path of an .onnx file");
                return;
            }
        } else {
            config_.model_path = *model;
        }
        try {
            Graph graph = import_onnx(config_.model_path);
            fold_batch_norm(graph);
            if (quantizable_layers(graph).empty())
                throw Error(config_.model_path + ": the model has no conv or fully connected "
                                                 "layer, so there is nothing to quantize");
            config_.graph = std::move(graph);
            model_loaded_ = true;
        } catch (const std::exception& e) {
            problem(*f, std::string("cannot load the model: ") + e.what());
        }
    }

    void read_data(const Field* f) {
        if (!f) return;
        auto data = mapping(*f, {"dir", "calibration_images", "validation_images", "train",
                                 "validation", "test", "calibration", "preprocess"},
                            "{dir: /usr/share/datasets/fashion-mnist, calibration_images: 1000, "
                            "validation_images: 5000}");
        if (!data) return;
        DataSource& source = config_.data;
        for (Split split : {Split::train, Split::validation, Split::test, Split::calibration})
            if (const Field* s = data->get(split_name(split)))
                if (auto parsed = split_source(*s)) source.splits[split] = *parsed;
        if (const Field* d = data->get("dir")) {
            if (!source.is_idx())
                problem(*d, "dir (idx files) and image folders or arrays per split are both "
                            "given; keep one");
            else if (auto dir = text(*d, "a directory")) {
                source.idx_dir = *dir;
                if (!std::filesystem::is_directory(*dir))
                    problem(*d, "directory '" + *dir + "' does not exist; install the Debian "
                                "package dataset-fashion-mnist or point dir at the folder with "
                                "train-images-idx3-ubyte.gz");
            }
        }
        if (const Field* p = data->get("preprocess")) {
            if (source.is_idx())
                problem(*p, "preprocess applies to image folders and arrays (data.test, ...), "
                            "not to idx files, which are read as Fashion-MNIST always is");
            else read_preprocess(*p);
        }
        if (!source.is_idx() && model_loaded_ && source.preprocess.channels == 0 &&
            !config_.graph.input_shape.empty())
            source.preprocess.channels = config_.graph.input_shape[0]; // the model's color
        const bool idx = source.is_idx();
        if (const Field* c = data->get("calibration_images"))
            if (auto n = integer(*c, 1, idx ? 55000 : std::numeric_limits<int64_t>::max(),
                                 idx ? "calibration uses the first N of the 55,000 training images"
                                     : "e.g. 1000"))
                config_.calibration_images = *n;
        if (!idx) config_.validation_images = 0;
        if (const Field* v = data->get("validation_images"))
            if (auto n = integer(*v, 1, idx ? 5000 : std::numeric_limits<int64_t>::max(),
                                 idx ? "the validation split has 5,000 images" : "e.g. 5000"))
                config_.validation_images = *n;
    }

    // `test: folder`, `test: d.npz`, or `test: {path: d.npz, images: x, labels: y, first: 0,
    // count: 100}`, or `test: {images: x.npy, labels: y.npy}`.
    std::optional<SplitSource> split_source(const Field& f) {
        SplitSource s;
        if (f.node.IsScalar()) {
            if (auto path = text(f, "an image folder or an .npz file")) s.path = *path;
            else return std::nullopt;
            return s;
        }
        auto m = mapping(f, {"path", "images", "labels", "first", "count"},
                         "{path: data.npz, images: images, labels: labels, first: 0, count: 1000}");
        if (!m) return std::nullopt;
        std::optional<std::string> images, labels;
        if (const Field* i = m->get("images")) images = text(*i, "an array name or .npy file");
        if (const Field* l = m->get("labels")) labels = text(*l, "an array name or .npy file");
        if (const Field* p = m->get("path")) {
            if (auto path = text(*p, "an image folder or an .npz file")) s.path = *path;
            if (images) s.images_key = *images;
            if (labels) s.labels_key = *labels;
        } else if (images && labels) {
            s.path = *images;
            s.labels = *labels;
        } else {
            missing(*m, "path", "give path (an image folder or .npz file), or images and labels "
                                "(.npy files)");
            return std::nullopt;
        }
        if (const Field* first = m->get("first"))
            if (auto n = integer(*first, 0, std::numeric_limits<int64_t>::max(), "e.g. 0")) s.first = *n;
        if (const Field* count = m->get("count"))
            if (auto n = integer(*count, 1, std::numeric_limits<int64_t>::max(), "e.g. 1000")) s.count = *n;
        return s;
    }

    // A size: `28` or `[28, 32]` (height, width).
    std::optional<std::pair<int64_t, int64_t>> size_pair(const Field& f) {
        if (f.node.IsSequence() && f.node.size() == 2) {
            const Field h{f.node[0], f.node[0].Mark(), f.path + "[0]", f.node[0].Mark()};
            const Field w{f.node[1], f.node[1].Mark(), f.path + "[1]", f.node[1].Mark()};
            auto hv = integer(h, 1, 65536, "a size in pixels"), wv = integer(w, 1, 65536, "a size in pixels");
            if (hv && wv) return std::pair{*hv, *wv};
            return std::nullopt;
        }
        if (auto n = integer(f, 1, 65536, "a size in pixels, or [height, width]")) return std::pair{*n, *n};
        return std::nullopt;
    }

    // `mean: 0.5` or `mean: [0.485, 0.456, 0.406]`.
    std::optional<std::vector<float>> per_channel(const Field& f, bool positive) {
        std::vector<float> values;
        const auto one = [&](const Field& v) {
            if (auto x = number(v, positive ? 0.0 : -1e30, !positive, 1e30,
                                positive ? "a standard deviation is > 0" : "e.g. 0.5"))
                values.push_back(static_cast<float>(*x));
        };
        if (!f.node.IsSequence()) one(f);
        else for (size_t i = 0; i < f.node.size(); ++i)
            one(Field{f.node[i], f.node[i].Mark(), f.path + "[" + std::to_string(i) + "]", f.node[i].Mark()});
        if (values.empty() || (values.size() != 1 && values.size() != 3)) {
            if (f.node.IsSequence()) problem(f, "expected 1 or 3 values (one per channel)");
            return std::nullopt;
        }
        return values;
    }

    void read_preprocess(const Field& f) {
        auto m = mapping(f, {"color", "resize", "crop", "mean", "std", "channel_order", "layout"},
                         "{color: rgb, resize: 32, crop: 28, mean: [0.485, 0.456, 0.406], "
                         "std: [0.229, 0.224, 0.225]}");
        if (!m) return;
        Preprocess& p = config_.data.preprocess;
        if (const Field* c = m->get("color"))
            if (auto v = choice(*c, {"gray", "rgb"}, "color")) p.channels = *v == "gray" ? 1 : 3;
        if (const Field* r = m->get("resize")) {
            if (auto size = size_pair(*r)) {
                if (r->node.IsSequence()) std::tie(p.resize_height, p.resize_width) = *size;
                else p.resize = size->first;
            }
        }
        if (const Field* c = m->get("crop"))
            if (auto size = size_pair(*c)) std::tie(p.crop_height, p.crop_width) = *size;
        if (const Field* v = m->get("mean"))
            if (auto values = per_channel(*v, false)) p.mean = *values;
        if (const Field* v = m->get("std"))
            if (auto values = per_channel(*v, true)) p.std = *values;
        if (const Field* o = m->get("channel_order"))
            if (auto v = choice(*o, {"rgb", "bgr"}, "channel order")) p.bgr = *v == "bgr";
        if (const Field* l = m->get("layout"))
            if (auto v = choice(*l, {"auto", "nchw", "nhwc"}, "array layout"))
                config_.data.layout = *v == "nchw" ? ArrayLayout::nchw
                                    : *v == "nhwc" ? ArrayLayout::nhwc : ArrayLayout::automatic;
    }

    // A quantizer as written, with where each argument is.
    struct QuantizerField {
        QuantizerSpec spec;
        std::map<std::string, Field> args;
    };

    // `weights: uniform` or `weights: {name: kmeans, iterations: 50}` (likewise activations).
    std::optional<QuantizerField> quantizer_spec(const Field& f,
                                                 const std::vector<std::string>& names,
                                                 const std::string& what,
                                                 const std::string& example) {
        QuantizerField result;
        QuantizerSpec& spec = result.spec;
        if (f.node.IsScalar()) {
            auto name = choice(f, names, what);
            if (!name) return std::nullopt;
            spec.name = *name;
            return result;
        }
        if (!f.node.IsMap()) {
            problem(f, "expected a " + what + " name or a mapping, got " + node_kind(f.node) +
                           "; write it as " + example);
            return std::nullopt;
        }
        const Fields map = fields(f.node, f.mark, f.path, {});
        const Field* name_field = map.get("name");
        if (!name_field) {
            missing(map, "name", "write it as " + example);
            return std::nullopt;
        }
        auto name = choice(*name_field, names, what);
        if (!name) return std::nullopt;
        spec.name = *name;
        bool args_ok = true;
        for (const auto& [key, arg] : map.by_key) {
            if (key == "name") continue;
            auto value = text(arg, "a single value for argument '" + key + "'");
            if (!value) {
                args_ok = false;
                continue;
            }
            spec.args[key] = *value;
            result.args.emplace(key, arg);
        }
        if (!args_ok) return std::nullopt;
        return result;
    }

    // Checks each argument alone (so a problem points at its line), then all together.
    template <typename Make>
    bool check_quantizer_args(const Field& f, const QuantizerField& q, Make make) {
        const QuantizerSpec& spec = q.spec;
        bool ok = true;
        for (const auto& [key, value] : spec.args) {
            try {
                make(spec.name, QuantizerArgs{{key, value}});
            } catch (const Error& e) {
                const Field& arg = q.args.at(key);
                problem(arg.key_mark, arg.path, std::string(e.what()) + "; see docs/quantizers.md");
                ok = false;
            }
        }
        if (!ok) return false;
        try {
            make(spec.name, spec.args);
        } catch (const Error& e) {
            problem(f, std::string(e.what()) + "; see docs/quantizers.md");
            return false;
        }
        return true;
    }

    void read_quantizers(const Field* f) {
        if (!f) return;
        auto q = mapping(*f, {"weights", "activations", "path"},
                         "{weights: uniform, activations: max, path: int}");
        if (!q) return;
        if (const Field* w = q->get("weights")) {
            auto spec = quantizer_spec(*w, weight_quantizer_names(), "weight quantizer",
                                       "{name: kmeans, iterations: 50}");
            if (spec && check_quantizer_args(*w, *spec, [](const std::string& name,
                                                           const QuantizerArgs& args) {
                    make_weight_quantizer(name, args);
                }))
                config_.weight_quantizer = spec->spec;
        }
        if (const Field* a = q->get("activations")) {
            auto spec = quantizer_spec(*a, calibration_rule_names(), "calibration rule",
                                       "{name: percentile, percentile: 99.9}");
            if (spec && check_quantizer_args(*a, *spec, [](const std::string& name,
                                                           const QuantizerArgs& args) {
                    make_calibration(name, args);
                }))
                config_.activation_calibration = spec->spec;
        }
        if (const Field* p = q->get("path"))
            if (auto path = choice(*p, {"int", "fake"}, "execution path"))
                config_.path = parse_execution_path(*path);
    }

    void read_granularity(const Field* f) {
        if (!f) return;
        if (auto g = choice(*f, {"network", "layer", "kernel"}, "granularity"))
            config_.space.granularity = parse_granularity(*g);
    }

    // A list of distinct bit-widths, sorted descending.
    std::optional<std::vector<int>> bit_list(const Field& f, bool weights) {
        if (!f.node.IsSequence() || f.node.size() == 0) {
            const std::string got =
                f.node.IsSequence() ? std::string("an empty list") : node_kind(f.node);
            problem(f, "expected a non-empty list of bit-widths, got " + got +
                           "; write it as [8, 6, 4, 3, 2]");
            return std::nullopt;
        }
        std::vector<int> bits;
        std::map<int, std::string> seen; // bit-width -> where it first appeared
        bool ok = true;
        for (size_t i = 0; i < f.node.size(); ++i) {
            const YAML::Node item = f.node[i];
            const Field element{item, item.Mark(), f.path + "[" + std::to_string(i) + "]",
                                item.Mark()};
            const std::optional<int> parsed =
                item.IsScalar() ? parse_number<int>(item.Scalar()) : std::nullopt;
            if (!parsed) {
                problem(element, "expected a bit-width (1..8, 16 or 32), got " + node_kind(item) +
                                     "; write a whole number such as 4");
                ok = false;
                continue;
            }
            const int value = *parsed;
            // Weights and activations allow the same widths here: 0 (pruning) is not a width.
            if (value == 0 || !valid_activation_bits(value)) {
                problem(element, "bit-width " + item.Scalar() + " is not allowed; use 1..8, "
                                 "16 or 32 (float)" +
                                     (weights && value == 0 ? "; pruning single kernels is "
                                                              "'bits.pruning: true'"
                                                            : ""));
                ok = false;
                continue;
            }
            if (auto [it, fresh] = seen.emplace(value, element.path); !fresh) {
                problem(element, "bit-width " + std::to_string(value) + " appears twice (also " +
                                     it->second + "); list each once");
                ok = false;
                continue;
            }
            bits.push_back(value);
        }
        if (!ok) return std::nullopt;
        std::sort(bits.begin(), bits.end(), std::greater<>());
        return bits;
    }

    void read_bits(const Field* f) {
        if (!f) return;
        auto bits = mapping(
            *f, {"weights", "activations", "pruning"},
            "{weights: [8, 6, 4, 3, 2], activations: [8, 6, 4, 3, 2], pruning: false}");
        if (!bits) return;
        if (const Field* w = bits->get("weights")) {
            if (auto list = bit_list(*w, true))
                config_.space.weight_bits = *list;
            else
                weight_bits_unknown_ = true;
        }
        if (const Field* a = bits->get("activations")) {
            if (auto list = bit_list(*a, false))
                config_.space.activation_bits = *list;
            else
                activation_bits_unknown_ = true;
        }
        if (const Field* p = bits->get("pruning")) {
            if (auto pruning = boolean(*p)) {
                config_.space.allow_pruning = *pruning;
                if (*pruning && config_.space.granularity != Granularity::kernel)
                    problem(*p, std::string("pruning single kernels needs granularity kernel, "
                                            "but it is ") +
                                    granularity_name(config_.space.granularity) +
                                    "; set granularity: kernel or pruning: false");
            }
        }
    }

    void read_pinned(const Field* f) {
        if (!f) return;
        auto pins = mapping(*f, {}, "{first: W8A8, last: W8A8, conv3: W4A8}");
        if (!pins) return;
        // Resolve in file order so a clash names the later entry.
        std::vector<const Field*> entries;
        for (const auto& [key, field] : pins->by_key) entries.push_back(&field);
        std::sort(entries.begin(), entries.end(), [](const Field* a, const Field* b) {
            return std::pair(a->mark.line, a->mark.column) <
                   std::pair(b->mark.line, b->mark.column);
        });
        std::map<std::string, std::string> pinned_by; // layer -> the key that pinned it
        for (const Field* entry : entries) {
            const std::string key = entry->path.substr(f->path.size() + 1);
            auto bits = uniform_bits(*entry);
            if (!model_loaded_ || !bits) continue;
            auto layer = pinned_layer(*entry, key);
            if (!layer) continue;
            if (auto [it, fresh] = pinned_by.emplace(*layer, key); !fresh) {
                problem(*entry, "layer '" + *layer + "' is pinned twice (also as '" + it->second +
                                    "'); keep one");
                continue;
            }
            config_.space.pinned[*layer] = *bits;
        }
    }

    // The node name a `pinned` key stands for.
    std::optional<std::string> pinned_layer(const Field& entry, const std::string& key) {
        const Graph& graph = config_.graph;
        const std::vector<std::string> layers = layer_names(graph);
        if (key == "first") return layers.front();
        if (key == "last") return layers.back();
        const Node* node = graph.find_node(key);
        if (!node) {
            problem(entry.key_mark, entry.path,
                    "unknown layer '" + key + "'; " + suggestion(key, layers) +
                        "use first, last or one of the quantizable layers: " + join(layers));
            return std::nullopt;
        }
        if (!is_quantizable(*node)) {
            problem(entry.key_mark, entry.path,
                    "layer '" + key + "' is a " + op_name(node->op) +
                        " node; only conv and fully connected layers take bits: " + join(layers));
            return std::nullopt;
        }
        return key;
    }

    // max_relative_bitops / max_weight_bytes: a number > 0, or "W4A4" = what that uniform
    // policy costs on this model.
    std::optional<Limit> cost_limit(const Field& f, bool bitops) {
        Limit limit{0, f.mark, f.path, f.node.IsScalar() ? f.node.Scalar() : ""};
        if (f.node.IsScalar() && parse_number<double>(f.node.Scalar())) {
            auto n = number(f, 0, false, HUGE_VAL,
                            bitops ? "e.g. 0.0625 (= W4A8 of FP32's 32x32) or W4A4"
                                   : "e.g. 12000 or W4A4");
            if (!n) return std::nullopt;
            limit.value = *n;
            return limit;
        }
        if (!f.node.IsScalar() || (f.node.Scalar()[0] != 'W' && f.node.Scalar()[0] != 'w')) {
            problem(f, "expected a number > 0 or a uniform setting such as W4A4, got " +
                           node_kind(f.node) + "; e.g. " + (bitops ? "0.0625" : "12000") +
                           " or W4A4");
            return std::nullopt;
        }
        auto bits = uniform_bits(f);
        if (!bits) return std::nullopt;
        if (!model_loaded_) return std::nullopt;
        const BitPolicy uniform =
            BitPolicy::uniform(config_.graph, bits->weight_bits, bits->activation_bits);
        const Costs costs = compute_costs(config_.graph, uniform);
        limit.value = bitops ? costs.relative_bitops() : costs.weight_bytes();
        return limit;
    }

    std::vector<Limit> read_constraints(const Field* f) {
        std::vector<Limit> limits; // bitops, weight bytes, macs, in that order when present
        if (!f) return limits;
        auto c = mapping(*f, {"max_relative_bitops", "max_weight_bytes", "max_macs",
                              "max_accuracy_drop"},
                         "{max_relative_bitops: W4A4, max_accuracy_drop: 1.0}");
        if (!c) return limits;
        Constraints& constraints = config_.space.constraints;
        if (const Field* b = c->get("max_relative_bitops"))
            if (auto limit = cost_limit(*b, true)) {
                constraints.max_relative_bitops = limit->value;
                limits.push_back(*limit);
            }
        if (const Field* w = c->get("max_weight_bytes"))
            if (auto limit = cost_limit(*w, false)) {
                constraints.max_weight_bytes = limit->value;
                limits.push_back(*limit);
            }
        if (const Field* m = c->get("max_macs"))
            if (auto macs = integer(*m, 1, std::numeric_limits<int64_t>::max(),
                                    "give MACs per image, e.g. 1000000")) {
                constraints.max_macs = *macs;
                limits.push_back(
                    Limit{static_cast<double>(*macs), m->mark, m->path, m->node.Scalar()});
            }
        if (const Field* a = c->get("max_accuracy_drop"))
            if (auto drop = number(*a, 0, true, 100, "give points of top-1 accuracy, e.g. 1.0"))
                constraints.max_accuracy_drop = *drop;
        return limits;
    }

    // A cost limit below what the cheapest policy of the space costs can never be met.
    //
    // It runs even when other parts of the space have problems, with a floor that stays below
    // whatever the user meant: an unreadable bits list counts as reaching 1 bit, a pin with a
    // problem is left out (fewer pins only lower the floor).
    void check_floors(const std::vector<Limit>& limits) {
        SearchSpace space = config_.space;
        if (weight_bits_unknown_) space.weight_bits = {1};
        if (activation_bits_unknown_) space.activation_bits = {1};
        const Graph& graph = config_.graph;
        BitPolicy cheapest = space.lowest(graph);
        // allow_pruning at another granularity is a problem reported already; the floor assumes
        // pruning all the same.
        const bool pruning = space.allow_pruning;
        if (pruning)
            for (LayerBits& layer : cheapest.layers)
                if (!space.is_pinned(layer.name))
                    std::fill(layer.weight_bits.begin(), layer.weight_bits.end(), 0);
        const Costs floor = compute_costs(graph, cheapest);
        const std::string what =
            pruning ? "what the pinned layers alone cost (every other kernel pruned)"
                    : "what the cheapest policy of the space costs (every unpinned layer at W" +
                          std::to_string(space.weight_bits.back()) + "A" +
                          std::to_string(space.activation_bits.back()) +
                          (space.pinned.empty() ? "" : ", pinned layers at their pins") + ")";
        const std::string fix =
            pruning ? "raise the limit or pin fewer layers"
                    : "raise the limit, allow lower bit-widths or pin fewer layers";
        for (const Limit& limit : limits) {
            const std::string key = limit.path.substr(limit.path.find('.') + 1);
            double minimum = 0;
            if (key == "max_relative_bitops") minimum = floor.relative_bitops();
            if (key == "max_weight_bytes") minimum = floor.weight_bytes();
            if (key == "max_macs") minimum = static_cast<double>(floor.flops / 2);
            if (limit.value >= minimum) continue;
            problem(limit.mark, limit.path,
                    "impossible constraint: " + limit.as_written +
                        (limit.as_written == shortest_decimal(limit.value)
                             ? ""
                             : " (= " + short_text(limit.value) + ")") +
                        " is below " + rounded_up_text(minimum) + ", " + what + "; " + fix +
                        (key == "max_macs" && !pruning ? " (only pruning lowers MACs)" : ""));
        }
    }

    void read_objective(const Field* f) {
        if (f) {
            if (auto o = choice(*f, {"accuracy", "relative_bitops", "weight_bytes"}, "objective"))
                config_.objective = parse_objective(*o);
            return;
        }
        const Constraints& c = config_.space.constraints;
        if (c.max_accuracy_drop && !c.has_cost_constraint())
            config_.objective = Objective::relative_bitops;
    }

    void read_baselines(const Field* f) {
        if (!f) {
            for (int b : config_.space.weight_bits)
                if (std::count(config_.space.activation_bits.begin(),
                               config_.space.activation_bits.end(), b))
                    config_.baselines.push_back(UniformBits{b, b});
            return;
        }
        if (!f->node.IsSequence() && !f->node.IsNull()) {
            problem(*f, "expected a list of uniform settings, got " + node_kind(f->node) +
                            "; write it as [W8A8, W4A4] (or [] for none)");
            return;
        }
        std::map<std::string, std::string> seen;
        for (size_t i = 0; i < f->node.size(); ++i) {
            const YAML::Node item = f->node[i];
            const Field element{item, item.Mark(), f->path + "[" + std::to_string(i) + "]",
                                item.Mark()};
            auto bits = uniform_bits(element);
            if (!bits) continue;
            if (auto [it, fresh] = seen.emplace(uniform_bits_name(*bits), element.path); !fresh) {
                problem(element, uniform_bits_name(*bits) + " appears twice (also " + it->second +
                                     "); list each once");
                continue;
            }
            config_.baselines.push_back(*bits);
        }
    }

    void read_policy(const Fields& top) {
        const Field* f = top.get("policy");
        const std::string example = "{name: greedy_sensitivity, metric: kl}";
        if (!f) {
            missing(top, "policy", "choose a search policy, e.g. 'policy: " + example + "'");
            return;
        }
        std::vector<std::string> registered;
        for (const PolicyInfo& info : registered_policies()) registered.push_back(info.name);
        Fields params;
        const Field* name_field = f;
        if (!f->node.IsScalar()) { // `policy: uniform` is short for `policy: {name: uniform}`
            auto map = mapping(*f, {}, example);
            if (!map) return;
            params = *map;
            name_field = params.get("name");
            if (!name_field) {
                missing(params, "name", "one of the registered policies: " + join(registered));
                return;
            }
        }
        auto name = choice(*name_field, registered, "policy");
        if (!name) return;
        const PolicyInfo* info = find_policy(*name);
        config_.policy_name = *name;
        std::vector<std::string> accepted;
        for (const ParamSpec& spec : info->params) accepted.push_back(spec.name);
        std::map<std::string, ParamValue> values = default_params(info->params).all();
        for (const auto& [key, field] : params.by_key) {
            if (key == "name") continue;
            auto spec = std::find_if(info->params.begin(), info->params.end(),
                                     [&key = key](const ParamSpec& s) {
                                         return s.name == key; // (init-capture: clang < 16)
                                     });
            if (spec == info->params.end()) {
                problem(field.key_mark, field.path,
                        "policy '" + *name + "' has no parameter '" + key + "'; " +
                            suggestion(key, accepted) +
                            (accepted.empty() ? "it takes none"
                                              : "its parameters: " + join(accepted)));
                continue;
            }
            auto value = text(field, "a single value for parameter '" + key + "'");
            if (!value) continue;
            try {
                values[key] = parse_param(*spec, *value);
            } catch (const Error& e) {
                const std::string hint =
                    spec->help.empty() ? "see docs/config.md" : key + ": " + spec->help;
                problem(field, std::string(e.what()) + "; " + hint);
            }
        }
        config_.policy_params = ParamValues(std::move(values));
    }

    void read_budget(const Field* f) {
        if (!f) return;
        auto b = mapping(*f, {"max_evaluations", "max_seconds", "batch"},
                         "{max_evaluations: 200, max_seconds: 600, batch: 32}");
        if (!b) return;
        if (const Field* e = b->get("max_evaluations"))
            if (auto n = integer(*e, 1, std::numeric_limits<int64_t>::max(),
                                 "a search needs at least one evaluation"))
                config_.max_evaluations = *n;
        if (const Field* s = b->get("max_seconds"))
            if (auto seconds = number(*s, 0, false, HUGE_VAL,
                                      "give wall-clock seconds, or leave the key out for no limit"))
                config_.max_seconds = *seconds;
        if (const Field* n = b->get("batch"))
            if (auto batch = integer(*n, 1, 4096, "e.g. 32 candidates per round"))
                config_.batch = *batch;
    }

    void read_output(const Field* f) {
        config_.output_dir =
            "runs/" + std::filesystem::path(config_.source_path).stem().string();
        if (!f) return;
        if (auto dir = text(*f, "a directory path")) config_.output_dir = *dir;
    }

    RunConfig config_;
    YamlProblems problems_; // every problem, reported together at the end
    bool model_loaded_ = false;
    bool weight_bits_unknown_ = false;     // bits.weights has a problem
    bool activation_bits_unknown_ = false; // bits.activations has a problem
};

} // namespace

RunConfig parse_run_config(const std::string& text, const std::string& name) {
    return ConfigReader(text, name).read();
}

RunConfig load_run_config(const std::string& path) {
    return parse_run_config(read_yaml_file(path, "run configuration"), path);
}

DataConfig load_data_config(const std::string& path, const Graph& graph) {
    const RunConfig config =
        ConfigReader(read_yaml_file(path, "data configuration"), path).read_data_only(graph);
    return {config.data, config.calibration_images, config.validation_images};
}

} // namespace mps
