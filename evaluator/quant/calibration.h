#pragma once
// Calibration: the activation statistics of every quantizable layer's input value, gathered once
// on the float32 network (calibrate(), evaluator/engine/calibrate.h) and immutable afterwards; the
// clipping range at each bit-width is computed from them on first use and memoized.
#include "evaluator/quant/activation_range.h"

#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <utility>

namespace mps {

// Memo of computed ranges, safe to use from many threads; a copy starts empty (the ranges are a
// pure function of the observers, so nothing is lost).
class RangeMemo {
public:
    RangeMemo() = default;
    RangeMemo(const RangeMemo&) {}
    RangeMemo& operator=(const RangeMemo&);
    ~RangeMemo();
    // The memoized value for (value, bits), computing it with `compute` on first use.
    float get(const std::string& value, int bits, const std::function<float()>& compute) const;

private:
    mutable std::mutex mutex_;
    mutable std::map<std::pair<std::string, int>, float> ranges_;
};

// Calibrated activation statistics of every quantizable layer's input value, gathered once on the
// float32 network over the calibration images; immutable afterwards (range() is thread-safe).
struct Calibration {
    CalibrationMethod method;
    std::map<std::string, ActivationObserver> observers; // value name -> statistics
    std::map<std::string, bool> is_unsigned;             // value name -> non-negative by construction
    // The clipping range of `value` at `bits` under `method` (cached per (value, bits)). Throws
    // mps::Error for a value that was not calibrated.
    float range(const std::string& value, int bits) const;
    RangeMemo memo = {};
};

} // namespace mps
