// libFuzzer target: the idx reader (evaluator/data/dataset.h), raw or gzip'd, as the data set
// loader reads Fashion-MNIST's files. Seeds: fuzz/corpus/idx.
#include "evaluator/data/dataset.h"
#include "fuzz/fuzz_input.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    const std::string path = mps::fuzz::as_file(data, size, ".idx");
    mps::fuzz::expect_clean([&] { mps::read_idx(path); });
    return 0;
}
