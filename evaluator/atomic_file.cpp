#include "evaluator/atomic_file.h"

#include "evaluator/error.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

namespace mps {

void write_file_atomically(const std::string& path, std::string_view bytes) {
    const std::string temporary = path + "." + std::to_string(::getpid()) + ".tmp";
    auto fail = [&](const std::string& step) {
        const std::string reason = std::strerror(errno);
        std::remove(temporary.c_str());
        throw Failure(path + ": cannot write (" + step + ": " + reason +
                      "); check that the directory exists, is writable and has free space");
    };
    std::FILE* f = std::fopen(temporary.c_str(), "wb");
    if (!f) fail("open");
    const bool written = std::fwrite(bytes.data(), 1, bytes.size(), f) == bytes.size() &&
                         std::fflush(f) == 0 && ::fsync(::fileno(f)) == 0;
    if (std::fclose(f) != 0 || !written) fail("write");
    if (std::rename(temporary.c_str(), path.c_str()) != 0) fail("rename");
}

} // namespace mps
