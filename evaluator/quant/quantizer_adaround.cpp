// `adaround`: AdaRound's learned rounding (adaround.h) on `mse`'s or `uniform`'s grid, bound to
// one model by with_data() (docs/quantizers.md, "adaround"). The learned codes of a (layer,
// bit-width) are computed the first time any of its kernels is asked for, once whatever the
// threads asking, and kept on disk when the data source names a directory.
//
// The per-kernel interface does not say which layer a kernel belongs to (the integer path and the
// export ask for kernel_codes(w, bits) alone), so a bound quantizer recognises the model's kernels
// by their values: a hash of the values, confirmed by comparing them. Identical kernels of one
// layer learn identical codes (kernels are optimised independently); a kernel found in several
// layers gets the codes learned in the first of them.
#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"
#include "evaluator/base/once_map.h"
#include "evaluator/base/sha256.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/quant/adaround.h"
#include "evaluator/quant/layer_codes_file.h"
#include "evaluator/quant/quantizer.h"

#include <algorithm>
#include <cstring>
#include <unordered_map>

namespace mps {

namespace {

// What an adaround quantizer is made of, shared by its bound copies.
struct Settings {
    AdaRoundOptions options;
    std::string scale;                           // "mse" or "max"
    std::shared_ptr<const WeightQuantizer> grid; // gives the scale and the nearest codes
    QuantizerArgs args;                          // completed with defaults, canonical text
};

uint64_t kernel_hash(std::span<const float> w) {
    uint64_t h = 1469598103934665603ULL;
    const auto* bytes = reinterpret_cast<const unsigned char*>(w.data());
    for (size_t i = 0; i < w.size_bytes(); ++i) h = (h ^ bytes[i]) * 1099511628211ULL;
    return h;
}

std::string file_safe(const std::string& name) {
    std::string safe = name;
    for (char& c : safe)
        if (!std::isalnum(static_cast<unsigned char>(c)) && c != '-' && c != '_' && c != '.') c = '_';
    return safe;
}

// The codes one model's layers learned, per (layer, bits), computed on first request.
class LearnedCodes {
public:
    LearnedCodes(std::shared_ptr<const Settings> settings, std::shared_ptr<const LayerDataSource> data)
        : settings_(std::move(settings)), data_(std::move(data)) {
        layers_ = quantizable_layers(data_->graph());
        for (size_t l = 0; l < layers_.size(); ++l) {
            const Tensor& w = layers_[l]->weight;
            const int64_t kernels = w.dims.empty() ? 0 : w.dims[0];
            for (int64_t k = 0; k < kernels; ++k)
                index_.emplace(kernel_hash(kernel_of(static_cast<int>(l), k)),
                               Ref{static_cast<int>(l), k});
        }
    }

    // The learned codes of kernel `w` at 2..8 bits, or nullopt when it is none of the model's.
    std::optional<WeightQuantizer::KernelCodes> find(std::span<const float> w, int bits) const {
        std::optional<Ref> found;
        const auto [begin, end] = index_.equal_range(kernel_hash(w));
        for (auto it = begin; it != end; ++it) {
            const std::span<const float> kernel = kernel_of(it->second.layer, it->second.kernel);
            if (kernel.size() == w.size() && std::equal(kernel.begin(), kernel.end(), w.begin()) &&
                (!found || std::pair(it->second.layer, it->second.kernel) <
                               std::pair(found->layer, found->kernel)))
                found = it->second;
        }
        if (!found) return std::nullopt;
        const LayerCodes& layer = codes(found->layer, bits);
        const auto first = layer.codes.begin() + found->kernel * layer.size;
        return WeightQuantizer::KernelCodes{layer.scales[static_cast<size_t>(found->kernel)],
                                            std::vector<int32_t>(first, first + layer.size)};
    }

private:
    struct Ref {
        int layer;
        int64_t kernel;
    };

    std::span<const float> kernel_of(int layer, int64_t k) const {
        const Tensor& w = layers_[static_cast<size_t>(layer)]->weight;
        const size_t size = w.data.size() / static_cast<size_t>(w.dims[0]);
        return std::span<const float>(w.data).subspan(static_cast<size_t>(k) * size, size);
    }

    const LayerCodes& codes(int layer, int bits) const {
        return codes_.get({layer, bits}, [&] { return load_or_learn(layer, bits); });
    }

    std::string file_of(int layer, int bits) const {
        std::string key = "adaround|" + data_->fingerprint() + "|" + layers_[static_cast<size_t>(layer)]->name +
                          "|" + std::to_string(bits);
        for (const auto& [name, value] : settings_->args) key += "|" + name + "=" + value;
        return data_->cache_dir() + "/" + file_safe(layers_[static_cast<size_t>(layer)]->name) +
               ".w" + std::to_string(bits) + "." + sha256_hex(key).substr(0, 16) + ".codes";
    }

    LayerCodes load_or_learn(int layer, int bits) const {
        const Tensor& w = layers_[static_cast<size_t>(layer)]->weight;
        const int64_t kernels = w.dims[0], size = w.numel() / kernels;
        const bool persist = !data_->cache_dir().empty();
        if (persist)
            if (auto stored = read_layer_codes(file_of(layer, bits), kernels, size)) return *stored;
        LayerCodes learned = learn(layer, bits);
        if (persist) write_layer_codes(file_of(layer, bits), learned);
        return learned;
    }

    LayerCodes learn(int layer, int bits) const {
        const Node& node = *layers_[static_cast<size_t>(layer)];
        const std::shared_ptr<const LayerInputMoments> moments = data_->input_moments(node.name);
        LayerCodes out;
        out.kernels = node.weight.dims[0];
        out.size = node.weight.numel() / out.kernels;
        if (moments->size != out.size || out.kernels % moments->groups != 0)
            throw Failure("adaround: layer '" + node.name + "' has kernels of " +
                          std::to_string(out.size) + " weights but input moments of size " +
                          std::to_string(moments->size));
        for (int64_t k = 0; k < out.kernels; ++k)
            out.scales.push_back(settings_->grid->kernel_codes(kernel_of(layer, k), bits).scale);
        const int64_t per_group = out.kernels / moments->groups;
        const std::span<const float> all(node.weight.data);
        for (int64_t g = 0; g < moments->groups; ++g) {
            const std::vector<int32_t> q = adaround_codes(
                all.subspan(static_cast<size_t>(g * per_group * out.size),
                            static_cast<size_t>(per_group * out.size)),
                out.size,
                std::span<const float>(out.scales).subspan(static_cast<size_t>(g * per_group),
                                                           static_cast<size_t>(per_group)),
                bits,
                std::span<const double>(moments->group(g), static_cast<size_t>(out.size * out.size)),
                settings_->options);
            for (int32_t c : q) out.codes.push_back(static_cast<int8_t>(c));
        }
        return out;
    }

    std::shared_ptr<const Settings> settings_;
    std::shared_ptr<const LayerDataSource> data_;
    std::vector<const Node*> layers_;
    std::unordered_multimap<uint64_t, Ref> index_;
    OnceMap<std::pair<int, int>, LayerCodes> codes_; // by (layer, bits)
};

class AdaRoundQuantizer final : public WeightQuantizer {
public:
    AdaRoundQuantizer(std::shared_ptr<const Settings> settings,
                      std::shared_ptr<const LearnedCodes> learned)
        : settings_(std::move(settings)), learned_(std::move(learned)) {}
    std::string name() const override { return "adaround"; }
    QuantizerArgs args() const override { return settings_->args; }
    bool has_integer_form() const override { return true; }
    bool learns_from_data() const override { return true; }

    std::shared_ptr<const WeightQuantizer> with_data(
        std::shared_ptr<const LayerDataSource> data) const override {
        if (!data) throw Error("adaround: no layer data given");
        return std::make_shared<AdaRoundQuantizer>(
            settings_, std::make_shared<const LearnedCodes>(settings_, std::move(data)));
    }

    KernelCodes kernel_codes(std::span<const float> w, int bits) const override {
        if (learned_ && bits >= 2 && bits <= 8)
            if (auto codes = learned_->find(w, bits)) return *codes;
        // 1 bit (as uniform), 16 bits, unbound, or not one of the model's kernels: the nearest
        // codes on the same grid
        return settings_->grid->kernel_codes(w, bits);
    }

protected:
    void quantize_bits(std::span<const float> w, int bits, std::span<float> out) const override {
        dequantize_codes(kernel_codes(w, bits), out);
    }

private:
    std::shared_ptr<const Settings> settings_;
    std::shared_ptr<const LearnedCodes> learned_; // nullptr until with_data()
};

} // namespace

std::unique_ptr<WeightQuantizer> make_adaround_quantizer(const QuantizerArgs& args) {
    const std::string owner = "weight quantizer 'adaround'";
    check_args(owner, args, {"iterations", "scale", "lambda", "learning_rate"});
    auto settings = std::make_shared<Settings>();
    AdaRoundOptions& o = settings->options;
    o.iterations = int_arg(owner, args, "iterations", o.iterations, 1, 100000);
    const double lambda = double_arg(owner, args, "lambda", o.lambda, 0.0, 1e6);
    const double learning_rate = double_arg(owner, args, "learning_rate", 0.01, 1e-9, 1e3);
    o.lambda = static_cast<float>(lambda);
    o.learning_rate = static_cast<float>(learning_rate);
    const auto scale = args.find("scale");
    // max: in 10 measured cells (docs/quantizers.md) it won 6 with the same mean accuracy, and it
    // spares mse's search over 51 clipping ratios
    settings->scale = scale == args.end() ? "max" : scale->second;
    if (settings->scale != "mse" && settings->scale != "max")
        throw Error(owner + ": argument scale = '" + settings->scale +
                    "' must be mse (the `mse` quantizer's clipped scale) or max (`uniform`'s)");
    settings->grid = make_weight_quantizer(settings->scale == "mse" ? "mse" : "uniform");
    settings->args = {{"iterations", std::to_string(o.iterations)},
                      {"scale", settings->scale},
                      {"lambda", shortest_decimal(lambda)},
                      {"learning_rate", shortest_decimal(learning_rate)}};
    return std::make_unique<AdaRoundQuantizer>(std::move(settings), nullptr);
}

} // namespace mps
