#pragma once
// A fresh directory under the system's temporary directory for one test, removed with everything
// in it when the test ends. Names carry the process id and a counter, so tests that run at the
// same time (ctest -j, several test binaries) never share one.
#include <filesystem>
#include <set>
#include <string>

#include <unistd.h>

namespace mps::test {

class TempDir {
public:
    TempDir() {
        static int made = 0;
        path_ = std::filesystem::temp_directory_path() /
                ("mpsearch_test_" + std::to_string(::getpid()) + "_" + std::to_string(made++));
        std::filesystem::create_directories(path_);
    }
    ~TempDir() {
        std::error_code ignored; // a destructor must not throw
        std::filesystem::remove_all(path_, ignored);
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;

    const std::filesystem::path& path() const { return path_; }
    std::string file(const std::string& name) const { return (path_ / name).string(); }
    // The names of the directory's entries.
    std::set<std::string> entries() const {
        std::set<std::string> names;
        for (const auto& e : std::filesystem::directory_iterator(path_))
            names.insert(e.path().filename().string());
        return names;
    }

private:
    std::filesystem::path path_;
};

} // namespace mps::test
