#pragma once
// Shared by the libFuzzer targets (fuzz/README.md). The readers under test take file paths, as
// mpsearch's commands do, so each input is written to one file per process first: the fuzzing
// then goes through exactly the code a user's bad file goes through.
//
// What counts as a finding: a crash, a sanitizer report, a leak, a timeout, or any exception
// other than mps::Error. An mps::Error is the promised outcome for bad input (one message, exit
// 2 or 1); anything else reaches the user as "internal error" (search/main.cpp).
#include "evaluator/base/error.h"

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace mps::fuzz {

// The input as the file <tmp>/mpsearch-fuzz-<pid><suffix>, rewritten for every input.
inline std::string as_file(const uint8_t* data, size_t size, const std::string& suffix) {
    const char* dir = std::getenv("TMPDIR");
    const std::string path = std::string(dir && *dir ? dir : "/tmp") + "/mpsearch-fuzz-" +
                             std::to_string(::getpid()) + suffix;
    std::FILE* f = std::fopen(path.c_str(), "wb");
    if (!f || std::fwrite(data, 1, size, f) != size || std::fclose(f) != 0) std::abort();
    return path;
}

// Runs `read`; an mps::Error is the expected answer to bad input, anything else escapes.
template <typename Read>
void expect_clean(Read read) {
    try {
        read();
    } catch (const mps::Error&) {
    }
}

} // namespace mps::fuzz
