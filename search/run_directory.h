#pragma once
// The run directory of `mpsearch search` and the one process that writes it.
//
// RunDirectory creates the directory when needed and holds an exclusive flock(2) on
// <dir>/.mpsearch.lock for its lifetime; the file holds the PID of the holder. The kernel drops
// the lock when the process ends, however it ends (SIGKILL too), so a killed run leaves no stale
// lock behind, only a stale PID in the file, which nothing reads while the lock is free. A second
// process (a new run with the same --output, or a --resume) is refused with mps::Busy naming the
// holder's PID instead of mixing two runs' files.
//
// Once locked, the temporaries a killed writer left behind are removed: `<file>.<pid>.tmp` of
// the atomic writes (evaluator/base/atomic_file.h) and the chart's `.<file>.<pid>.<n>.gp` /
// `.svg` (search/gnuplot.h). Nothing else writes the directory while it is locked, so they
// belong to no live process.
#include <string>
#include <vector>

namespace mps {

inline constexpr const char* run_lock_name = ".mpsearch.lock";

class RunDirectory {
public:
    // Throws mps::Failure when the directory cannot be created or locked, mps::Busy when another
    // process holds it.
    explicit RunDirectory(const std::string& dir);
    ~RunDirectory();
    RunDirectory(const RunDirectory&) = delete;
    RunDirectory& operator=(const RunDirectory&) = delete;

    const std::string& path() const { return dir_; }
    std::string file(const std::string& name) const; // dir/name
    // The stale temporaries removed when the lock was taken (file names).
    const std::vector<std::string>& removed_temporaries() const { return removed_; }

private:
    std::string dir_;
    int fd_ = -1;
    std::vector<std::string> removed_;
};

// Throws mps::Busy (as RunDirectory would) when `dir` exists and another process holds its lock;
// creates nothing. What a run calls first, so that a busy directory is refused before the data
// is loaded and before the state of a directory another process is changing is looked at.
void refuse_if_busy(const std::string& dir);

// True for the names of mpsearch's temporaries (above).
bool is_temporary_name(const std::string& name);

} // namespace mps
