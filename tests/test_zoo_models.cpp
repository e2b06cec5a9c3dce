// The committed zoo models (models/*.onnx): each loads, survives an export/import round trip with
// identical logits, and scores its recorded test accuracy on real images (first 512 test images
// here; the full figure is in models/README.md and checked by hand there).
#include "evaluator/data/dataset.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/inference.h"
#include "evaluator/io/onnx_io.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <string>

using namespace mps;

TEST_CASE("zoo models round-trip through ONNX export with identical logits") {
    const std::string data_dir = default_fashion_mnist_dir;
    REQUIRE(std::filesystem::exists(data_dir + "/t10k-images-idx3-ubyte.gz"));
    const Dataset test = load_fashion_mnist(data_dir, Split::test).slice(0, 512);
    for (const char* name : {"lenet5", "vgg_small", "resnet8", "mobilenet_tiny"}) {
        CAPTURE(name);
        const Graph original = import_onnx(std::string(MPSEARCH_SOURCE_DIR) + "/models/" + name + ".onnx");
        const Graph again = import_onnx_bytes(export_onnx_bytes(original), name);
        InferenceEngine a(original, test.count), b(again, test.count);
        const float* la = a.run(test.images.data(), test.count);
        std::vector<float> first(la, la + test.count * a.num_classes());
        const float* lb = b.run(test.images.data(), test.count);
        float max_diff = 0;
        int64_t correct = 0;
        for (size_t j = 0; j < first.size(); ++j)
            max_diff = std::max(max_diff, std::fabs(first[j] - lb[j]));
        for (int64_t i = 0; i < test.count; ++i)
            correct += argmax(&first[i * a.num_classes()], a.num_classes()) == test.labels[i];
        CHECK(max_diff < 1e-5f);
        // Trained, not random: every zoo model is above 85 % on these images.
        CHECK(correct > 0.85 * test.count);
    }
}
