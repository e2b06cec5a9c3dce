#pragma once
// Elementwise host work on large buffers (fake quantization, the gated quantizers' mixing and
// their gradients) runs as fixed chunks of host_chunk elements, one OpenMP task each. Fixed
// chunks rather than one slice per thread: partial sums kept per chunk and added in chunk order
// give the same result whatever the thread count.
#include <algorithm>
#include <cstdint>

namespace mps {

inline constexpr int64_t host_chunk = 16384; // elements per task: enough to amortize the fork

// The chunks of n elements, and the extent of chunk t of them.
inline int64_t host_chunk_count(int64_t n) { return (n + host_chunk - 1) / host_chunk; }
struct HostChunk {
    int64_t begin, size;
};
inline HostChunk host_chunk_at(int64_t t, int64_t n) {
    const int64_t begin = t * host_chunk;
    return {begin, std::min(host_chunk, n - begin)};
}

} // namespace mps
