#include "evaluator/data/zip_archive.h"

#include "evaluator/base/error.h"

#include <zlib.h>

#include <algorithm>

namespace mps {

namespace {

// Members larger than this are refused before they are inflated (the fuzzers' memory limit; an
// image array of 1 GiB is far beyond what an evaluation holds in memory anyway).
constexpr uint64_t max_member_bytes = uint64_t{1} << 30;

uint64_t little_endian(std::span<const uint8_t> bytes, size_t at, int size) {
    uint64_t v = 0;
    for (int i = size - 1; i >= 0; --i) v = (v << 8) | bytes[at + static_cast<size_t>(i)];
    return v;
}

struct Member {
    std::string name;
    uint16_t method = 0, flags = 0;
    uint32_t crc = 0;
    uint64_t compressed = 0, size = 0, local_offset = 0;
};

// The Zip64 extra field (id 1) of a central directory entry: the 64-bit values of those of
// size, compressed size and offset that the entry holds as 0xFFFFFFFF, in that order.
void read_zip64_extra(std::span<const uint8_t> extra, Member& m, const std::string& where) {
    for (size_t at = 0; at + 4 <= extra.size();) {
        const uint64_t id = little_endian(extra, at, 2), length = little_endian(extra, at + 2, 2);
        if (at + 4 + length > extra.size()) break;
        if (id == 1) {
            size_t p = at + 4;
            for (uint64_t* field : {&m.size, &m.compressed, &m.local_offset}) {
                if (*field != 0xFFFFFFFFu) continue;
                if (p + 8 > at + 4 + length) throw Error(where + ": truncated Zip64 extra field");
                *field = little_endian(extra, p, 8);
                p += 8;
            }
        }
        at += 4 + length;
    }
}

std::vector<Member> central_directory(std::span<const uint8_t> bytes, const std::string& name) {
    // The end-of-central-directory record: the last "PK\5\6" within the final 64 KiB + 22 bytes.
    if (bytes.size() < 22) throw Error(name + ": not a zip (.npz) file: too short");
    size_t end = bytes.size() - 22;
    const size_t lowest = bytes.size() > 22 + 65535 ? bytes.size() - 22 - 65535 : 0;
    while (little_endian(bytes, end, 4) != 0x06054b50) {
        if (end == lowest) throw Error(name + ": not a zip (.npz) file: no end of central directory");
        --end;
    }
    const uint64_t count = little_endian(bytes, end + 10, 2);
    uint64_t at = little_endian(bytes, end + 16, 4);
    if (count == 0xFFFF || at == 0xFFFFFFFFu)
        throw Error(name + ": a Zip64 archive of more than 65,535 members or 4 GiB is not supported");
    std::vector<Member> members;
    for (uint64_t i = 0; i < count; ++i) {
        if (at + 46 > end || little_endian(bytes, at, 4) != 0x02014b50)
            throw Error(name + ": corrupt zip central directory (entry " + std::to_string(i) + ")");
        Member m;
        m.flags = static_cast<uint16_t>(little_endian(bytes, at + 8, 2));
        m.method = static_cast<uint16_t>(little_endian(bytes, at + 10, 2));
        m.crc = static_cast<uint32_t>(little_endian(bytes, at + 16, 4));
        m.compressed = little_endian(bytes, at + 20, 4);
        m.size = little_endian(bytes, at + 24, 4);
        const uint64_t name_length = little_endian(bytes, at + 28, 2),
                       extra_length = little_endian(bytes, at + 30, 2),
                       comment_length = little_endian(bytes, at + 32, 2);
        m.local_offset = little_endian(bytes, at + 42, 4);
        if (at + 46 + name_length + extra_length + comment_length > end)
            throw Error(name + ": corrupt zip central directory (entry " + std::to_string(i) + ")");
        m.name.assign(bytes.begin() + static_cast<std::ptrdiff_t>(at + 46),
                      bytes.begin() + static_cast<std::ptrdiff_t>(at + 46 + name_length));
        read_zip64_extra(bytes.subspan(at + 46 + name_length, extra_length), m,
                         name + ": member " + m.name);
        members.push_back(std::move(m));
        at += 46 + name_length + extra_length + comment_length;
    }
    return members;
}

std::vector<uint8_t> inflate_member(std::span<const uint8_t> data, uint64_t size,
                                    const std::string& where) {
    std::vector<uint8_t> out(size);
    z_stream stream{};
    if (inflateInit2(&stream, -MAX_WBITS) != Z_OK) throw Failure(where + ": zlib init failed");
    stream.next_in = const_cast<Bytef*>(data.data());
    stream.avail_in = static_cast<uInt>(data.size());
    stream.next_out = out.data();
    stream.avail_out = static_cast<uInt>(out.size());
    const int code = inflate(&stream, Z_FINISH);
    const uint64_t produced = stream.total_out;
    inflateEnd(&stream);
    if (code != Z_STREAM_END || produced != size)
        throw Error(where + ": corrupt or truncated deflate data");
    return out;
}

std::vector<uint8_t> member_bytes(std::span<const uint8_t> bytes, const Member& m,
                                  const std::string& name) {
    const std::string where = name + ": member " + m.name;
    if (m.flags & 1) throw Error(where + " is encrypted; save the arrays unencrypted");
    if (m.method != 0 && m.method != 8)
        throw Error(where + ": compression method " + std::to_string(m.method) +
                    " is not supported (stored and deflate are); save with numpy.savez or savez_compressed");
    if (m.size > max_member_bytes || m.compressed > bytes.size())
        throw Error(where + ": " + std::to_string(m.size) + " bytes is more than the " +
                    std::to_string(max_member_bytes) + " a member may hold, or more than the file");
    const uint64_t at = m.local_offset;
    if (at + 30 > bytes.size() || little_endian(bytes, at, 4) != 0x04034b50)
        throw Error(where + ": corrupt zip local header");
    const uint64_t data_at = at + 30 + little_endian(bytes, at + 26, 2) + little_endian(bytes, at + 28, 2);
    if (data_at + m.compressed > bytes.size()) throw Error(where + ": truncated member data");
    const std::span<const uint8_t> data = bytes.subspan(data_at, m.compressed);
    if (m.method == 0 && m.compressed != m.size) throw Error(where + ": stored member sizes differ");
    std::vector<uint8_t> out = m.method == 0 ? std::vector<uint8_t>(data.begin(), data.end())
                                             : inflate_member(data, m.size, where);
    const uLong crc = crc32(crc32(0L, Z_NULL, 0), out.data(), static_cast<uInt>(out.size()));
    if (crc != m.crc) throw Error(where + ": CRC-32 mismatch: the file is corrupt");
    return out;
}

} // namespace

std::map<std::string, std::vector<uint8_t>> read_zip(std::span<const uint8_t> bytes,
                                                     const std::string& name) {
    std::map<std::string, std::vector<uint8_t>> out;
    for (const Member& m : central_directory(bytes, name)) {
        if (out.count(m.name)) throw Error(name + ": member " + m.name + " appears twice");
        out[m.name] = member_bytes(bytes, m, name);
    }
    return out;
}

} // namespace mps
