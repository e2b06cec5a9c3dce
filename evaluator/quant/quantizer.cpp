// The weight quantizer interface's shared part: bit-width handling, per-layer application, the
// registry and argument parsing. The quantizers themselves are in quantizer_*.cpp.
#include "evaluator/quant/quantizer.h"

#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"
#include "evaluator/ir/bit_policy.h"

#include <algorithm>

namespace mps {

void WeightQuantizer::quantize_kernel(std::span<const float> w, int bits,
                                      std::span<float> out) const {
    if (w.size() != out.size())
        throw Error("quantizer '" + name() + "': output has " + std::to_string(out.size()) +
                    " values for a kernel of " + std::to_string(w.size()));
    if (!valid_weight_bits(bits))
        throw Error("quantizer '" + name() + "': weight bit-width " + std::to_string(bits) +
                    " is out of range; use 0 (pruned), 1..8, 16 or 32 (float)");
    if (w.empty()) return;
    if (bits == 0) {
        std::fill(out.begin(), out.end(), 0.0f);
        return;
    }
    if (bits == float_bits) {
        if (out.data() != w.data()) std::copy(w.begin(), w.end(), out.begin());
        return;
    }
    // The quantizers read their input more than once; give them one that `out` does not alias.
    const bool overlap = out.data() < w.data() + w.size() && w.data() < out.data() + out.size();
    if (overlap) {
        const std::vector<float> copy(w.begin(), w.end());
        quantize_bits(copy, bits, out);
    } else {
        quantize_bits(w, bits, out);
    }
}

WeightQuantizer::KernelCodes WeightQuantizer::kernel_codes(std::span<const float>, int) const {
    throw Error("weight quantizer '" + name() + "' has no integer form");
}

std::shared_ptr<const WeightQuantizer> WeightQuantizer::with_data(
    std::shared_ptr<const LayerDataSource>) const {
    return nullptr;
}

Tensor quantize_weights(const WeightQuantizer& quantizer, const Tensor& weight,
                        std::span<const int> bits) {
    const int64_t kernels = weight.dims.empty() ? 0 : weight.dims[0];
    if (static_cast<int64_t>(bits.size()) != kernels)
        throw Error("quantize_weights: " + std::to_string(bits.size()) +
                    " bit-widths for a weight with " + std::to_string(kernels) + " kernels");
    Tensor out(weight.dims);
    const size_t per_kernel = kernels ? weight.data.size() / static_cast<size_t>(kernels) : 0;
    for (int64_t k = 0; k < kernels; ++k) {
        const size_t offset = static_cast<size_t>(k) * per_kernel;
        quantizer.quantize_kernel(std::span<const float>(weight.data).subspan(offset, per_kernel),
                                  bits[static_cast<size_t>(k)],
                                  std::span<float>(out.data).subspan(offset, per_kernel));
    }
    return out;
}

namespace {

using Factory = std::unique_ptr<WeightQuantizer> (*)(const QuantizerArgs&);

// Explicit table rather than self-registering statics: the evaluator is a static library, and
// the linker would drop a quantizer_*.cpp that nothing references.
const std::vector<std::pair<std::string, Factory>>& registry() {
    static const std::vector<std::pair<std::string, Factory>> table{
        {"uniform", make_uniform_quantizer},
        {"uniform_asymmetric", make_uniform_asymmetric_quantizer},
        {"ls", make_ls_quantizer},
        {"kmeans", make_kmeans_quantizer},
        {"bayesian_bits", make_bayesian_bits_quantizer},
        {"mse", make_mse_quantizer},
        {"adaround", make_adaround_quantizer},
    };
    return table;
}

std::string join(const std::vector<std::string>& names) {
    std::string text;
    for (const std::string& n : names) text += (text.empty() ? "" : ", ") + n;
    return text;
}

} // namespace

std::unique_ptr<WeightQuantizer> make_weight_quantizer(const std::string& name,
                                                       const QuantizerArgs& args) {
    for (const auto& [known, factory] : registry())
        if (known == name) return factory(args);
    throw Error("unknown weight quantizer '" + name + "'; known quantizers: " +
                join(weight_quantizer_names()));
}

std::vector<std::string> weight_quantizer_names() {
    std::vector<std::string> names;
    for (const auto& entry : registry()) names.push_back(entry.first);
    return names;
}

void check_args(const std::string& owner, const QuantizerArgs& args,
                const std::vector<std::string>& accepted) {
    for (const auto& [key, value] : args)
        if (std::find(accepted.begin(), accepted.end(), key) == accepted.end())
            throw Error(owner + ": unknown argument '" + key + "'; " +
                        (accepted.empty() ? std::string("it takes no arguments")
                                          : "accepted arguments: " + join(accepted)));
}

int int_arg(const std::string& owner, const QuantizerArgs& args, const std::string& key,
            int fallback, int lo, int hi) {
    auto it = args.find(key);
    if (it == args.end()) return fallback;
    const std::string& text = it->second;
    const std::optional<int> value = parse_number<int>(text);
    if (!value || *value < lo || *value > hi)
        throw Error(owner + ": argument " + key + " = '" + text + "' must be an integer in [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *value;
}

double double_arg(const std::string& owner, const QuantizerArgs& args, const std::string& key,
                  double fallback, double lo, double hi) {
    auto it = args.find(key);
    if (it == args.end()) return fallback;
    const std::string& text = it->second;
    const std::optional<double> value = parse_number<double>(text);
    if (!value || *value < lo || *value > hi)
        throw Error(owner + ": argument " + key + " = '" + text + "' must be a number in [" +
                    std::to_string(lo) + ", " + std::to_string(hi) + "]");
    return *value;
}

} // namespace mps
