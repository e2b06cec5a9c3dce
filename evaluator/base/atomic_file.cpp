#include "evaluator/base/atomic_file.h"

#include "evaluator/base/error.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace mps {

namespace {

// Makes the directory entry of a file just renamed into `dir` durable: without it a crash soon
// after the rename can bring back the old file (or none), although the new bytes were fsync'd.
// Returns false with errno set. EINVAL means the file system cannot sync a directory (some FUSE
// and network ones); there is nothing more to do then, so it counts as done.
bool sync_directory(const std::string& dir) {
    const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool synced = ::fsync(fd) == 0 || errno == EINVAL;
    const int saved = errno;
    ::close(fd);
    errno = saved;
    return synced;
}

std::string parent_directory(const std::string& path) {
    const std::string parent = std::filesystem::path(path).parent_path().string();
    return parent.empty() ? "." : parent;
}

} // namespace

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
    const std::string dir = parent_directory(path);
    if (!sync_directory(dir)) fail("fsync of the directory " + dir);
}

} // namespace mps
