#pragma once
// SHA-256 (FIPS 180-4) of a byte string or a file, as 64 lowercase hex digits. Policy files pin the
// model they were searched on with it. Self-contained: no crypto library is among the project's
// declared dependencies.
#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace mps {

// Incremental hashing: update() any number of times, then hex_digest() once.
class Sha256 {
public:
    Sha256();
    void update(const void* data, size_t size);
    void update(std::string_view bytes) { update(bytes.data(), bytes.size()); }
    std::array<uint8_t, 32> digest(); // finalizes; the object is spent afterwards
    std::string hex_digest();

private:
    void compress(const uint8_t* block);

    std::array<uint32_t, 8> state_;
    std::array<uint8_t, 64> buffer_{};
    size_t buffered_ = 0;
    uint64_t total_bytes_ = 0;
};

std::string sha256_hex(std::string_view bytes);
// Throws mps::Error naming the file when it cannot be read.
std::string sha256_file(const std::string& path);

} // namespace mps
