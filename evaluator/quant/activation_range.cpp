#include "evaluator/quant/activation_range.h"

#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"
#include "evaluator/ir/bit_policy.h"

#include <algorithm>
#include <cmath>

namespace mps {

std::map<std::string, bool> unsigned_values(const Graph& graph) {
    std::map<std::string, bool> result;
    result[graph.input] = false;
    auto is_unsigned = [&](const std::string& v) {
        auto it = result.find(v);
        return it != result.end() && it->second;
    };
    for (const Node& node : graph.nodes) {
        bool non_negative = false;
        switch (node.op) {
        case Op::relu: non_negative = true; break;
        case Op::clip: non_negative = node.clip_min >= 0.0f; break;
        case Op::max_pool:
        case Op::average_pool:
        case Op::global_average_pool:
        case Op::flatten:
        case Op::channel_shuffle: // moves or picks channels: values unchanged
        case Op::channel_slice: non_negative = is_unsigned(node.inputs.at(0)); break;
        case Op::add:
        case Op::mul:
        case Op::concat:
            non_negative = std::all_of(node.inputs.begin(), node.inputs.end(), is_unsigned);
            break;
        case Op::sigmoid:
        case Op::hard_sigmoid: non_negative = true; break; // in [0, 1]
        case Op::hard_swish: non_negative = false; break;  // down to -3/8
        case Op::conv:
        case Op::fully_connected:
        case Op::batch_norm:
        case Op::channel_affine: non_negative = false; break;
        }
        result[node.output] = non_negative;
    }
    return result;
}

namespace {

void check_activation_bits(int bits) {
    if (!valid_activation_bits(bits))
        throw Error("activation bit-width " + std::to_string(bits) +
                    " is out of range; use 1..8, 16 or 32 (float)");
}

} // namespace

int activation_qmax(int bits, bool is_signed) {
    if (bits < 1 || bits > 16)
        throw Error("activation_qmax: bit-width " + std::to_string(bits) + " is not in 1..16");
    if (is_signed) return bits == 1 ? 1 : (1 << (bits - 1)) - 1;
    return (1 << bits) - 1;
}

float activation_scale(float range, int bits, bool is_signed) {
    if (is_signed && bits == 1) return range;
    return range / static_cast<float>(activation_qmax(bits, is_signed));
}

void fake_quantize_activation(float* x, int64_t n, float range, int bits, bool is_signed) {
    check_activation_bits(bits);
    if (bits == float_bits) return;
    const float s = activation_scale(range, bits, is_signed);
    if (is_signed && bits == 1) {
        for (int64_t i = 0; i < n; ++i) x[i] = x[i] >= 0.0f ? s : -s;
        return;
    }
    if (s == 0.0f) { // nothing was seen but zeros at calibration
        std::fill(x, x + n, 0.0f);
        return;
    }
    const float qmax = static_cast<float>(activation_qmax(bits, is_signed));
    const float qmin = is_signed ? -qmax : 0.0f;
    // "+ 0.0f" turns a code of -0 into +0, so that fake-quant output is bit-identical to
    // dequantized integer codes.
    for (int64_t i = 0; i < n; ++i)
        x[i] = s * (std::clamp(std::nearbyint(x[i] / s), qmin, qmax) + 0.0f);
}

ActivationClipMask::ActivationClipMask(float range, int bits, bool is_signed) {
    check_activation_bits(bits);
    all_ = bits == float_bits;
    if (all_) return;
    binary_ = is_signed && bits == 1;
    scale_ = activation_scale(range, bits, is_signed);
    qmax_ = static_cast<float>(activation_qmax(bits, is_signed)); // 1 when binary
    qmin_ = is_signed ? -qmax_ : 0.0f;
}

const char* calibration_rule_name(CalibrationRule rule) {
    switch (rule) {
    case CalibrationRule::max: return "max";
    case CalibrationRule::percentile: return "percentile";
    case CalibrationRule::mse: return "mse";
    }
    return "unknown";
}

std::vector<std::string> calibration_rule_names() { return {"max", "percentile", "mse"}; }

CalibrationMethod make_calibration(const std::string& name, const QuantizerArgs& args) {
    const std::string owner = "activation calibration '" + name + "'";
    CalibrationMethod method;
    if (name == "max") {
        check_args(owner, args, {});
    } else if (name == "percentile") {
        check_args(owner, args, {"percentile"});
        method.rule = CalibrationRule::percentile;
        method.percentile = double_arg(owner, args, "percentile", 99.99, 1e-9, 100.0);
    } else if (name == "mse") {
        check_args(owner, args, {"grid"});
        method.rule = CalibrationRule::mse;
        method.grid = int_arg(owner, args, "grid", 100, 1, 100000);
    } else {
        throw Error("unknown activation calibration rule '" + name +
                    "'; known rules: max, percentile, mse");
    }
    return method;
}

QuantizerArgs calibration_args(const CalibrationMethod& method) {
    switch (method.rule) {
    case CalibrationRule::max: return {};
    case CalibrationRule::percentile: return {{"percentile", shortest_decimal(method.percentile)}};
    case CalibrationRule::mse: return {{"grid", std::to_string(method.grid)}};
    }
    return {};
}

ActivationObserver::ActivationObserver(bool is_signed)
    : is_signed_(is_signed), histogram_(bins, 0) {}

void ActivationObserver::grow_to(double limit) {
    if (top_ == 0.0) {
        int exponent = 0;
        std::frexp(limit, &exponent); // limit = m * 2^exponent, m in [0.5, 1): 2^exponent > limit
        top_ = std::ldexp(1.0, exponent);
        return;
    }
    while (limit >= top_) {
        for (size_t i = 0; i < bins / 2; ++i)
            histogram_[i] = histogram_[2 * i] + histogram_[2 * i + 1];
        std::fill(histogram_.begin() + bins / 2, histogram_.end(), 0);
        top_ *= 2.0;
    }
}

void ActivationObserver::observe(const float* x, int64_t n) {
    for (int64_t i = 0; i < n; ++i) {
        if (!std::isfinite(x[i])) continue;
        const float v = is_signed_ ? std::fabs(x[i]) : std::max(x[i], 0.0f);
        ++count_;
        sum_magnitude_ += v;
        if (v == 0.0f) {
            ++histogram_[0];
            continue;
        }
        max_ = std::max(max_, v);
        if (v >= top_) grow_to(v);
        // v / top_ * bins is exact (both powers of two), so the bin does not depend on when R grew.
        const auto bin = static_cast<size_t>(static_cast<double>(v) / top_ * bins);
        ++histogram_[std::min(bin, bins - 1)];
    }
}

void ActivationObserver::merge(const ActivationObserver& other) {
    if (other.is_signed_ != is_signed_)
        throw Error("ActivationObserver::merge: a signed and an unsigned observer");
    ActivationObserver theirs = other;
    const double top = std::max(top_, theirs.top_);
    if (top > 0.0) {
        // Bring both histograms to the common range R; grow_to needs R > limit, so ask for R/2.
        if (top_ < top) {
            if (top_ == 0.0) top_ = top; // only zeros so far: bin 0 stays bin 0
            else grow_to(top / 2);
        }
        if (theirs.top_ < top) {
            if (theirs.top_ == 0.0) theirs.top_ = top;
            else theirs.grow_to(top / 2);
        }
    }
    for (size_t i = 0; i < bins; ++i) histogram_[i] += theirs.histogram_[i];
    count_ += theirs.count_;
    max_ = std::max(max_, theirs.max_);
    sum_magnitude_ += theirs.sum_magnitude_;
}

double ActivationObserver::mean_magnitude() const {
    return count_ ? sum_magnitude_ / static_cast<double>(count_) : 0.0;
}

float ActivationObserver::range(const CalibrationMethod& method, int bits) const {
    check_activation_bits(bits);
    if (bits == float_bits) return max_;
    if (is_signed_ && bits == 1) return static_cast<float>(mean_magnitude());
    switch (method.rule) {
    case CalibrationRule::max: return max_;
    case CalibrationRule::percentile: return percentile_range(method.percentile);
    case CalibrationRule::mse: return mse_range(bits, method.grid);
    }
    return max_;
}

float ActivationObserver::percentile_range(double percent) const {
    if (count_ == 0 || max_ == 0.0f) return 0.0f;
    // Nearest rank (1-based), interpolated linearly inside its histogram bin.
    const auto rank = std::max<int64_t>(
        1, static_cast<int64_t>(std::ceil(percent / 100.0 * static_cast<double>(count_))));
    const double width = top_ / bins;
    int64_t below = 0;
    for (size_t i = 0; i < bins; ++i) {
        if (below + histogram_[i] >= rank) {
            const double inside =
                static_cast<double>(rank - below) / static_cast<double>(histogram_[i]);
            const double value = (static_cast<double>(i) + inside) * width;
            return std::min(static_cast<float>(value), max_);
        }
        below += histogram_[i];
    }
    return max_;
}

float ActivationObserver::mse_range(int bits, int grid) const {
    if (count_ == 0 || max_ == 0.0f) return 0.0f;
    const float qmax = static_cast<float>(activation_qmax(bits, is_signed_));
    const double width = top_ / bins;
    float best_range = max_;
    double best_error = -1.0;
    for (int i = 1; i <= grid; ++i) {
        const float candidate = static_cast<float>(static_cast<double>(max_) * i / grid);
        const float s = candidate / qmax;
        if (s == 0.0f) continue;
        double error = 0.0;
        for (size_t b = 0; b < bins; ++b) {
            if (!histogram_[b]) continue;
            const float v = static_cast<float>((static_cast<double>(b) + 0.5) * width);
            const float q = s * std::min(std::nearbyint(v / s), qmax);
            const double d = static_cast<double>(v) - q;
            error += d * d * static_cast<double>(histogram_[b]);
        }
        if (best_error < 0.0 || error < best_error) {
            best_error = error;
            best_range = candidate;
        }
    }
    return best_range;
}

} // namespace mps
