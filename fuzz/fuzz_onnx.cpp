// libFuzzer target: the ONNX importer (evaluator/io/onnx_io.h) on arbitrary bytes, then what a
// command does next with an imported graph (BN folding, shape inference). Seeds: tests/data.
#include "evaluator/io/onnx_io.h"
#include "fuzz/fuzz_input.h"

#include <string>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    mps::fuzz::expect_clean([&] {
        mps::Graph graph =
            mps::import_onnx_bytes(std::string(reinterpret_cast<const char*>(data), size), "fuzz.onnx");
        mps::fold_batch_norm(graph);
    });
    return 0;
}
