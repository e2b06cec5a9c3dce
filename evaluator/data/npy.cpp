#include "evaluator/data/npy.h"

#include "evaluator/base/error.h"
#include "evaluator/data/image_decode.h"
#include "evaluator/data/zip_archive.h"

#include <cstring>

namespace mps {

namespace {

constexpr int64_t max_bytes = int64_t{1} << 30; // as zip_archive.cpp's members

struct Header {
    std::string descr;
    bool fortran = false;
    std::vector<int64_t> shape;
};

// The text after `'key':` (spaces skipped), or npos when the key is missing.
size_t value_at(const std::string& text, const std::string& key) {
    size_t at = text.find("'" + key + "'");
    if (at == std::string::npos) return at;
    at = text.find_first_not_of(" ", at + key.size() + 2);
    if (at == std::string::npos || text[at] != ':') return std::string::npos;
    return text.find_first_not_of(" ", at + 1);
}

// The header is a Python dict literal: {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
// Read by hand (std::regex recurses per character, and the header is the fuzzers' input).
Header parse_header(const std::string& text, const std::string& name) {
    const auto malformed = [&] {
        return Error(name + ": malformed .npy header '" + text.substr(0, 120) +
                     "'; save the array with numpy.save");
    };
    Header h;
    size_t at = value_at(text, "descr");
    if (at == std::string::npos || text[at] != '\'') throw malformed();
    const size_t close = text.find('\'', at + 1);
    if (close == std::string::npos) throw malformed();
    h.descr = text.substr(at + 1, close - at - 1);
    at = value_at(text, "fortran_order");
    if (at == std::string::npos) throw malformed();
    h.fortran = text.compare(at, 4, "True") == 0;
    if (!h.fortran && text.compare(at, 5, "False") != 0) throw malformed();
    at = value_at(text, "shape");
    if (at == std::string::npos || text[at] != '(') throw malformed();
    const size_t end = text.find(')', at);
    if (end == std::string::npos) throw malformed();
    std::string digits;
    for (size_t i = at + 1; i <= end; ++i) {
        const char c = text[i];
        if (c >= '0' && c <= '9') {
            if (digits.size() > 12) throw Error(name + ": an array dimension is too large");
            digits += c;
        } else if (c == ',' || c == ' ' || c == ')') {
            if (!digits.empty()) h.shape.push_back(std::stoll(digits));
            digits.clear();
        } else {
            throw malformed();
        }
    }
    return h;
}

void set_dtype(NpyArray& a, const std::string& descr, const std::string& name) {
    const bool ok = descr.size() >= 3 && (descr[0] == '<' || descr[0] == '|' ||
                                          (descr[0] == '=' )) &&
                    (descr[1] == 'u' || descr[1] == 'i' || descr[1] == 'f');
    const std::string size = ok ? descr.substr(2) : "";
    a.kind = ok ? descr[1] : 0;
    a.item_size = size == "1" ? 1 : size == "2" ? 2 : size == "4" ? 4 : size == "8" ? 8 : 0;
    if (!ok || a.item_size == 0 || (a.kind == 'f' && a.item_size < 4) ||
        (descr[0] == '|' && a.item_size != 1))
        throw Error(name + ": dtype '" + descr + "' is not supported; images must be uint8 or "
                    "float32 and labels an integer type, little-endian (array.astype('uint8'), "
                    "'float32' or 'int64')");
}

} // namespace

int64_t NpyArray::count() const {
    int64_t n = 1;
    for (int64_t d : shape) n *= d;
    return n;
}

std::string NpyArray::dtype_name() const {
    return std::string(kind == 'u' ? "uint" : kind == 'i' ? "int" : "float") +
           std::to_string(item_size * 8);
}

std::string NpyArray::shape_text() const {
    std::string text = "(";
    for (size_t i = 0; i < shape.size(); ++i)
        text += (i ? ", " : "") + std::to_string(shape[i]);
    return text + (shape.size() == 1 ? ",)" : ")");
}

double NpyArray::real(int64_t i) const {
    const uint8_t* p = &data[static_cast<size_t>(i * item_size)];
    if (kind == 'f') {
        if (item_size == 4) { float f; std::memcpy(&f, p, 4); return f; }
        double d; std::memcpy(&d, p, 8); return d;
    }
    return static_cast<double>(integer(i));
}

int64_t NpyArray::integer(int64_t i) const {
    const uint8_t* p = &data[static_cast<size_t>(i * item_size)];
    uint64_t v = 0;
    for (int b = item_size - 1; b >= 0; --b) v = (v << 8) | p[b];
    if (kind == 'i' && item_size < 8 && (v >> (item_size * 8 - 1)) & 1)
        v |= ~uint64_t{0} << (item_size * 8); // sign-extend
    if (kind == 'u' && item_size == 8 && v > uint64_t(INT64_MAX)) return INT64_MAX;
    return static_cast<int64_t>(v);
}

NpyArray parse_npy(std::span<const uint8_t> bytes, const std::string& name) {
    if (bytes.size() < 10 || std::memcmp(bytes.data(), "\x93NUMPY", 6) != 0)
        throw Error(name + ": not a .npy file (bad magic); save the array with numpy.save");
    const int version = bytes[6];
    if (version < 1 || version > 3)
        throw Error(name + ": .npy format version " + std::to_string(version) + " is not supported");
    const size_t length_bytes = version == 1 ? 2 : 4;
    if (bytes.size() < 8 + length_bytes) throw Error(name + ": truncated .npy header");
    size_t header_length = 0;
    for (size_t i = length_bytes; i-- > 0;) header_length = (header_length << 8) | bytes[8 + i];
    if (header_length > 65536) throw Error(name + ": .npy header longer than 64 KiB; not a .npy file");
    const size_t data_at = 8 + length_bytes + header_length;
    if (bytes.size() < data_at) throw Error(name + ": truncated .npy header");
    const std::string text(bytes.begin() + static_cast<std::ptrdiff_t>(8 + length_bytes),
                           bytes.begin() + static_cast<std::ptrdiff_t>(data_at));
    const Header h = parse_header(text, name);
    NpyArray a;
    a.source = name;
    set_dtype(a, h.descr, name);
    if (h.fortran)
        throw Error(name + ": Fortran-order arrays are not supported; save "
                    "numpy.ascontiguousarray(array)");
    a.shape = h.shape;
    int64_t total = a.item_size;
    for (int64_t d : a.shape) {
        if (d > 0 && total > max_bytes / d)
            throw Error(name + ": array of shape " + a.shape_text() + " is larger than " +
                        std::to_string(max_bytes) + " bytes");
        total *= d;
    }
    if (static_cast<int64_t>(bytes.size() - data_at) != total)
        throw Error(name + ": truncated or oversized .npy file: shape " + a.shape_text() + " of " +
                    a.dtype_name() + " needs " + std::to_string(total) + " bytes of data, the file has " +
                    std::to_string(bytes.size() - data_at));
    a.data.assign(bytes.begin() + static_cast<std::ptrdiff_t>(data_at), bytes.end());
    return a;
}

NpyArray read_npy(const std::string& path) { return parse_npy(read_file_bytes(path), path); }

std::map<std::string, NpyArray> read_npz(const std::string& path) {
    std::map<std::string, NpyArray> arrays;
    for (auto& [member, bytes] : read_zip(read_file_bytes(path), path)) {
        const std::string key = member.ends_with(".npy") ? member.substr(0, member.size() - 4) : member;
        arrays[key] = parse_npy(bytes, path + ":" + key);
    }
    return arrays;
}

} // namespace mps
