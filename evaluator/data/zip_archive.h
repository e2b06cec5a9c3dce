#pragma once
// The members of a zip archive (what NumPy's .npz files are), read with zlib: stored and deflated
// members, the Zip64 sizes NumPy writes, CRC-32 checked. Encrypted or otherwise compressed
// members, multi-disk archives and archives of more than 65,535 members are refused. Errors are
// mps::Error naming the archive and the member.
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

namespace mps {

// Member name -> its uncompressed bytes; `name` stands for the archive in messages.
std::map<std::string, std::vector<uint8_t>> read_zip(std::span<const uint8_t> bytes,
                                                     const std::string& name);

} // namespace mps
