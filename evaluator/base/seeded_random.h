#pragma once
// Seeded random numbers that are identical with every standard library: std::mt19937_64's output
// sequence is fixed by the standard, but the distributions (uniform_real_distribution, ...) are
// not, so the conversions from raw 64-bit words are written here.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <random>
#include <utility>

namespace mps {

// Uniform in [0, 1): the top 53 bits of one draw scaled by 2^-53.
inline double random_unit(std::mt19937_64& rng) {
    return static_cast<double>(rng() >> 11) * (1.0 / 9007199254740992.0);
}

// Uniform in [low, high).
inline double random_uniform(std::mt19937_64& rng, double low, double high) {
    return low + (high - low) * random_unit(rng);
}

// An index in [0, n) without a modulo: the high 64 bits of draw * n (bias below 2^-40 for the
// sizes used here, and the same on every platform).
inline uint64_t random_index(std::mt19937_64& rng, uint64_t n) {
    return static_cast<uint64_t>((static_cast<unsigned __int128>(rng()) * n) >> 64);
}

// Fisher-Yates shuffle of [first, first + n).
template <typename T>
void random_shuffle(std::mt19937_64& rng, T* first, uint64_t n) {
    for (uint64_t i = n; i > 1; --i) std::swap(first[i - 1], first[random_index(rng, i)]);
}

// A seeded stream of portable draws for code that owns its generator (the search policies).
class RandomDraws {
public:
    explicit RandomDraws(uint64_t seed) : engine_(seed) {}

    double unit() { return random_unit(engine_); } // uniform in [0, 1)

    // Uniform in [0, n), n >= 1, exactly: draws below 2^64 mod n (the values that would bias a
    // modulo) are rejected.
    uint64_t below(uint64_t n) {
        const uint64_t threshold = (0 - n) % n;
        for (;;) {
            const uint64_t x = engine_();
            if (x >= threshold) return x % n;
        }
    }

    // Standard normal, Box-Muller from two draws.
    double normal() {
        const double u1 = 1.0 - unit(); // (0, 1]: the logarithm stays finite
        const double u2 = unit();
        return std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * 3.14159265358979323846 * u2);
    }

    // Normal(mean, sigma) truncated to [lo, hi] by rejection; after 64 rejections the mean
    // clamped into [lo, hi] (only for a sigma far below the distance).
    double truncated_normal(double mean, double sigma, double lo, double hi) {
        for (int attempt = 0; attempt < 64; ++attempt) {
            const double x = mean + sigma * normal();
            if (x >= lo && x <= hi) return x;
        }
        return std::clamp(mean, lo, hi);
    }

private:
    std::mt19937_64 engine_;
};

} // namespace mps
