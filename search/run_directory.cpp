#include "search/run_directory.h"

#include "evaluator/base/error.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <regex>

namespace mps {

namespace fs = std::filesystem;

namespace {

// The PID the holder wrote into the lock file, or "" when it has not yet (or the file is odd).
std::string holder_pid(int fd) {
    char text[32] = {};
    const ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) return "";
    std::string pid(text, static_cast<size_t>(n));
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return pid.find_first_not_of("0123456789") == std::string::npos ? pid : "";
}

void write_pid(int fd) {
    const std::string pid = std::to_string(::getpid()) + "\n";
    // Best effort: the PID only makes a refusal's message more useful.
    if (::ftruncate(fd, 0) == 0 && ::pwrite(fd, pid.data(), pid.size(), 0) < 0) {}
}

[[noreturn]] void throw_busy(const std::string& dir, int fd) {
    const std::string pid = holder_pid(fd);
    ::close(fd);
    throw Busy(dir + ": in use by another mpsearch process" +
               (pid.empty() ? std::string() : " (PID " + pid + ")") + ", which holds its lock (" +
               run_lock_name + "); wait for it to end, or give this run another output directory");
}

} // namespace

void refuse_if_busy(const std::string& dir) {
    const int fd = ::open((fs::path(dir) / run_lock_name).c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return; // no lock file: no run has locked it yet
    if (::flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK) throw_busy(dir, fd);
    ::close(fd); // releases the lock, if it was taken
}

bool is_temporary_name(const std::string& name) {
    static const std::regex atomic(R"(.+\.[0-9]+\.tmp)");
    static const std::regex chart(R"(\..+\.[0-9]+\.[0-9]+\.(gp|svg))");
    return std::regex_match(name, atomic) || std::regex_match(name, chart);
}

RunDirectory::RunDirectory(const std::string& dir) : dir_(dir) {
    std::error_code error;
    fs::create_directories(dir, error);
    if (error)
        throw Failure(dir + ": cannot create the run directory (" + error.message() + ")");
    const std::string lock = file(run_lock_name);
    fd_ = ::open(lock.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd_ < 0)
        throw Failure(lock + ": cannot open the run directory's lock file (" +
                      std::strerror(errno) + "); check that the directory is writable");
    if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
        const int fd = fd_;
        fd_ = -1;
        if (errno == EWOULDBLOCK) throw_busy(dir, fd);
        const std::string reason = std::strerror(errno);
        ::close(fd);
        throw Failure(lock + ": cannot lock the run directory (" + reason + ")");
    }
    write_pid(fd_);
    for (const fs::directory_entry& entry : fs::directory_iterator(dir, error)) {
        const std::string name = entry.path().filename().string();
        if (entry.is_regular_file(error) && is_temporary_name(name) && fs::remove(entry.path(), error))
            removed_.push_back(name);
    }
}

RunDirectory::~RunDirectory() {
    if (fd_ >= 0) ::close(fd_); // releases the lock
}

std::string RunDirectory::file(const std::string& name) const {
    return (fs::path(dir_) / name).string();
}

} // namespace mps
