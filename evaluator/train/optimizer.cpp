#include "evaluator/train/optimizer.h"

#include "evaluator/base/error.h"

#include <cmath>

namespace mps {

Optimizer::Optimizer(OptimizerOptions options, std::vector<TrainParameter>& params)
    : options_(std::move(options)), params_(params) {
    if (options_.kind != "sgd" && options_.kind != "adam")
        throw Error("optimizer: unknown optimizer '" + options_.kind + "'; use sgd or adam");
    for (const TrainParameter& p : params_) {
        Slot s;
        if (p.trainable) {
            s.first.assign(p.size(), 0.0f);
            if (options_.kind == "adam") s.second.assign(p.size(), 0.0f);
        }
        slots_.push_back(std::move(s));
    }
}

void Optimizer::step(double lr) {
    ++steps_;
    for (size_t i = 0; i < params_.size(); ++i) {
        const TrainParameter& p = params_[i];
        if (!p.trainable) continue;
        if (options_.kind == "sgd") sgd(p, slots_[i], static_cast<float>(lr));
        else adam(p, slots_[i], lr);
    }
}

void Optimizer::sgd(const TrainParameter& p, Slot& s, float lr) const {
    float* w = p.data();
    const float* g = p.grad_data();
    float* v = s.first.data();
    const float wd = p.decay ? static_cast<float>(options_.weight_decay) : 0.0f;
    const float m = static_cast<float>(options_.momentum);
    const bool nesterov = options_.nesterov;
    const int64_t n = static_cast<int64_t>(p.size());
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t j = 0; j < n; ++j) {
        const float grad = g[j] + wd * w[j];
        v[j] = m * v[j] + grad;
        w[j] -= lr * (nesterov ? grad + m * v[j] : v[j]);
    }
}

void Optimizer::adam(const TrainParameter& p, Slot& s, double lr) const {
    constexpr double beta1 = 0.9, beta2 = 0.999;
    const float c1 = static_cast<float>(1.0 - std::pow(beta1, static_cast<double>(steps_)));
    const float c2 = static_cast<float>(1.0 - std::pow(beta2, static_cast<double>(steps_)));
    float* w = p.data();
    const float* g = p.grad_data();
    float* m = s.first.data();
    float* v = s.second.data();
    const float wd = p.decay ? static_cast<float>(options_.weight_decay) : 0.0f;
    const float step = static_cast<float>(lr);
    const int64_t n = static_cast<int64_t>(p.size());
#pragma omp parallel for schedule(static) if (n > 16384)
    for (int64_t j = 0; j < n; ++j) {
        const float grad = g[j] + wd * w[j];
        m[j] = 0.9f * m[j] + 0.1f * grad;
        v[j] = 0.999f * v[j] + 0.001f * grad * grad;
        w[j] -= step * (m[j] / c1) / (std::sqrt(v[j] / c2) + 1e-8f);
    }
}

double scheduled_learning_rate(double peak, bool cosine, int64_t t, int64_t total, int64_t warmup) {
    if (t < warmup) return peak * static_cast<double>(t + 1) / static_cast<double>(warmup);
    if (!cosine || total <= warmup) return peak;
    const double progress = static_cast<double>(t - warmup) / static_cast<double>(total - warmup);
    return 0.5 * peak * (1.0 + std::cos(3.14159265358979323846 * progress));
}

} // namespace mps
