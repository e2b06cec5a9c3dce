// libFuzzer target: the policy file reader (evaluator/io/policy_file.h) against a small model
// (tests/data/bad/tiny.onnx), as `mpsearch eval --policy` reads one. Seeds: fuzz/corpus/policy.
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/policy_file.h"
#include "fuzz/fuzz_input.h"

namespace {
const std::string model_path = MPSEARCH_SOURCE_DIR "/tests/data/bad/tiny.onnx";
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const mps::Graph graph = [] {
        mps::Graph g = mps::import_onnx(model_path);
        mps::fold_batch_norm(g);
        return g;
    }();
    const std::string path = mps::fuzz::as_file(data, size, ".policy.yaml");
    mps::fuzz::expect_clean([&] { mps::read_policy_file(path, graph, model_path); });
    return 0;
}
