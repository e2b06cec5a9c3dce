#pragma once
// Seeded random numbers that are identical with every standard library: std::mt19937_64's output
// sequence is fixed by the standard, but the distributions (uniform_real_distribution, ...) are
// not, so the conversions from raw 64-bit words are written here.
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

} // namespace mps
