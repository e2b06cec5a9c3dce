// Calibration's ranges: memoized per (value, bits), computed from the observed statistics.
#include "evaluator/quant/calibration.h"

#include "evaluator/base/error.h"

namespace mps {

RangeMemo& RangeMemo::operator=(const RangeMemo&) {
    std::lock_guard lock(mutex_);
    ranges_.clear();
    return *this;
}

RangeMemo::~RangeMemo() = default;

float RangeMemo::get(const std::string& value, int bits,
                     const std::function<float()>& compute) const {
    const auto key = std::make_pair(value, bits);
    {
        std::lock_guard lock(mutex_);
        if (auto it = ranges_.find(key); it != ranges_.end()) return it->second;
    }
    const float range = compute(); // outside the lock: the mse rule takes a while
    std::lock_guard lock(mutex_);
    ranges_.emplace(key, range);
    return range;
}

float Calibration::range(const std::string& value, int bits) const {
    auto it = observers.find(value);
    if (it == observers.end())
        throw Error("calibration has no statistics for value '" + value +
                    "'; only the inputs of conv and fully connected layers are calibrated");
    const ActivationObserver& observer = it->second;
    return memo.get(value, bits, [&] { return observer.range(method, bits); });
}

} // namespace mps
