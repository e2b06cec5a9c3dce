// libFuzzer target: the archive reader (search/archive.h) against a small model
// (tests/data/bad/tiny.onnx), as `mpsearch search --resume` reads archive.jsonl. Checksums are
// checked first, so most mutations stop there; the seeds' lines are valid and a fuzzer that
// keeps a line intact reaches the line parsing. Seeds: fuzz/corpus/archive.
#include "evaluator/io/onnx_io.h"
#include "fuzz/fuzz_input.h"
#include "search/archive.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
    static const mps::Graph graph = [] {
        mps::Graph g = mps::import_onnx(MPSEARCH_SOURCE_DIR "/tests/data/bad/tiny.onnx");
        mps::fold_batch_norm(g);
        return g;
    }();
    const std::string path = mps::fuzz::as_file(data, size, ".jsonl");
    mps::fuzz::expect_clean([&] { mps::read_archive(path, graph); });
    return 0;
}
