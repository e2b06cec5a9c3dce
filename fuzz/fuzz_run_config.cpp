// libFuzzer target: the run config reader (search/run_config.h) on arbitrary text, through the
// same file reading as `mpsearch search --config`. Zoo names resolve to the source tree's models.
// Seeds: configs/ and fuzz/corpus/run_config.
#include "fuzz/fuzz_input.h"
#include "search/run_config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = mps::fuzz::as_file(data, size, ".yaml");
    mps::fuzz::expect_clean([&] { mps::load_run_config(path); });
    return 0;
}
