// write_file_atomically (evaluator/base/atomic_file.h): the bytes arrive whole, replace an older file,
// leave no temporary, work for a name without a directory part (the parent is "."), and a write
// that cannot happen is an mps::Failure (an exit-1 failure, not bad input) naming the path.
#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>

#include <fstream>
#include <sstream>
#include <string>

using namespace mps;

namespace {

std::string read(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

} // namespace

TEST_CASE("write_file_atomically: writes, replaces and leaves no temporary") {
    test::TempDir dir;
    const std::string path = dir.file("a.txt");
    write_file_atomically(path, "first");
    write_file_atomically(path, std::string("second\0line", 11));
    CHECK(read(path) == std::string("second\0line", 11));
    CHECK(dir.entries() == std::set<std::string>{"a.txt"});
}

TEST_CASE("write_file_atomically: a name without a directory goes to the current directory") {
    test::TempDir dir;
    const std::filesystem::path before = std::filesystem::current_path();
    std::filesystem::current_path(dir.path());
    write_file_atomically("b.txt", "here");
    std::filesystem::current_path(before);
    CHECK(read(dir.file("b.txt")) == "here");
}

TEST_CASE("write_file_atomically: an unwritable place is a Failure naming the path") {
    test::TempDir dir;
    write_file_atomically(dir.file("file"), "not a directory");
    const std::string through_file = dir.file("file") + "/x.txt";
    for (const std::string& path : {through_file, std::string("/proc/mpsearch/x.txt")}) {
        INFO(path);
        try {
            write_file_atomically(path, "bytes");
            FAIL("no error");
        } catch (const Error& e) {
            CHECK(e.kind() == ErrorKind::failure);
            CHECK(std::string(e.what()).starts_with(path + ": cannot write (open: "));
        }
    }
    CHECK(dir.entries() == std::set<std::string>{"file"});
}
