// The model zoo: exact shapes and parameter counts of each architecture, seeded Kaiming init,
// BN placement that folds, and the trainer's inference forward against the naive reference.
#include "evaluator/base/error.h"
#include "evaluator/io/zoo.h"
#include "evaluator/ref/reference.h"
#include "evaluator/train/train_network.h"

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <random>

namespace {

using mps::Graph;
using mps::Op;

std::vector<int64_t> weight_dims(const Graph& g, const std::string& node) {
    const mps::Node* n = g.find_node(node);
    REQUIRE_MESSAGE(n != nullptr, node);
    return n->weight.dims;
}

mps::Tensor random_images(int64_t n, uint64_t seed) {
    mps::Tensor t({n, 1, 28, 28});
    std::mt19937_64 rng(seed);
    for (float& v : t.data) v = static_cast<float>(static_cast<double>(rng() >> 11) * 0x1p-53 * 3.0 - 0.8);
    return t;
}

} // namespace

TEST_CASE("zoo: lenet5 has the classic shapes and 61,706 parameters") {
    const Graph g = mps::make_architecture("lenet5", 1);
    CHECK(weight_dims(g, "conv1") == std::vector<int64_t>{6, 1, 5, 5});
    CHECK(weight_dims(g, "conv2") == std::vector<int64_t>{16, 6, 5, 5});
    CHECK(weight_dims(g, "fc1") == std::vector<int64_t>{120, 400});
    CHECK(weight_dims(g, "fc2") == std::vector<int64_t>{84, 120});
    CHECK(weight_dims(g, "fc3") == std::vector<int64_t>{10, 84});
    CHECK(g.shapes.at("pool1") == std::vector<int64_t>{6, 14, 14});
    CHECK(g.shapes.at("pool2") == std::vector<int64_t>{16, 5, 5});
    CHECK(g.shapes.at(g.output) == std::vector<int64_t>{10});
    CHECK(mps::graph_params(g) == 61706);
    CHECK(g.input == "input");
    CHECK(g.output == "output");
}

TEST_CASE("zoo: vgg_small, resnet8 and mobilenet_tiny shapes and parameter counts") {
    const Graph vgg = mps::make_architecture("vgg_small", 1);
    CHECK(weight_dims(vgg, "conv5") == std::vector<int64_t>{128, 64, 3, 3});
    CHECK(vgg.shapes.at("pool3") == std::vector<int64_t>{128, 3, 3});
    CHECK(weight_dims(vgg, "fc1") == std::vector<int64_t>{256, 1152});
    CHECK(vgg.find_node("conv1_bn") != nullptr);
    CHECK(vgg.find_node("conv1")->bias.empty());
    CHECK(mps::graph_params(vgg) == 436906); // BN scale and shift included

    const Graph res = mps::make_architecture("resnet8", 1);
    CHECK(res.find_node("block1_proj") == nullptr); // 16 -> 16, stride 1: identity shortcut
    CHECK(weight_dims(res, "block2_proj") == std::vector<int64_t>{32, 16, 1, 1});
    CHECK(res.find_node("block2_proj")->stride == mps::Dims2{2, 2});
    CHECK(res.find_node("block2_conv1")->stride == mps::Dims2{2, 2});
    CHECK(res.shapes.at("block3_relu") == std::vector<int64_t>{64, 7, 7});
    CHECK(res.shapes.at("gap") == std::vector<int64_t>{64, 1, 1});
    CHECK(weight_dims(res, "fc") == std::vector<int64_t>{10, 64});
    CHECK(res.find_node("block2_add")->op == Op::add);
    CHECK(mps::graph_params(res) == 77754);

    const Graph mob = mps::make_architecture("mobilenet_tiny", 1);
    const mps::Node* dw = mob.find_node("block1_dw");
    REQUIRE(dw != nullptr);
    CHECK(dw->groups == 16);
    CHECK(dw->weight.dims == std::vector<int64_t>{16, 1, 3, 3});
    CHECK(dw->stride == mps::Dims2{2, 2});
    CHECK(mob.find_node("block1_pw")->stride == mps::Dims2{1, 1});
    CHECK(mob.find_node("block1_dw_relu6")->op == Op::clip);
    CHECK(mob.find_node("block1_dw_relu6")->clip_max == 6.0f);
    CHECK(mob.shapes.at("block2_pw_relu6") == std::vector<int64_t>{64, 7, 7});
    CHECK(mob.shapes.at("block4_pw_relu6") == std::vector<int64_t>{128, 7, 7});
    CHECK(mps::graph_params(mob) == 18826);
}

TEST_CASE("zoo: Kaiming-uniform init is seeded and within its bound") {
    const Graph a = mps::make_architecture("vgg_small", 7);
    const Graph b = mps::make_architecture("vgg_small", 7);
    const Graph c = mps::make_architecture("vgg_small", 8);
    CHECK(a.find_node("conv3")->weight.data == b.find_node("conv3")->weight.data);
    CHECK(a.find_node("conv3")->weight.data != c.find_node("conv3")->weight.data);
    const mps::Tensor& w = a.find_node("conv3")->weight; // fan_in = 32 * 9
    const double bound = std::sqrt(6.0 / (32 * 9));
    double sum_sq = 0, max_abs = 0;
    for (float v : w.data) {
        sum_sq += double(v) * v;
        max_abs = std::max(max_abs, std::abs(double(v)));
    }
    CHECK(max_abs <= bound);
    CHECK(max_abs > 0.95 * bound);
    // Variance of U(-b, b) is b^2 / 3.
    CHECK(sum_sq / w.numel() == doctest::Approx(bound * bound / 3).epsilon(0.05));
}

TEST_CASE("zoo: unknown architecture names the known ones") {
    try {
        mps::make_architecture("alexnet", 1);
        FAIL("no error");
    } catch (const mps::Error& e) {
        const std::string message = e.what();
        CHECK(message.find("alexnet") != std::string::npos);
        for (const std::string& name : mps::architecture_names())
            CHECK(message.find(name) != std::string::npos);
    }
}

TEST_CASE("zoo: every architecture folds its batch norms and matches the reference forward") {
    const mps::Tensor images = random_images(3, 5);
    for (const std::string& name : mps::architecture_names()) {
        CAPTURE(name);
        Graph g = mps::make_architecture(name, 3);
        // Non-trivial BN statistics so folding and inference-mode BN are really exercised.
        std::mt19937_64 rng(11);
        for (mps::Node& n : g.nodes)
            if (n.op == Op::batch_norm)
                for (size_t c = 0; c < n.weight.data.size(); ++c) {
                    n.weight.data[c] = 0.5f + float(rng() % 100) / 100.0f;
                    n.bias.data[c] = float(rng() % 100) / 200.0f - 0.25f;
                    n.mean.data[c] = float(rng() % 100) / 200.0f - 0.25f;
                    n.var.data[c] = 0.5f + float(rng() % 100) / 100.0f;
                }
        const mps::Tensor expected = mps::reference_forward(g, images);
        REQUIRE(expected.dims == std::vector<int64_t>{3, 10});

        mps::TrainNetwork net(g, 3, mps::NetworkMode::inference);
        net.forward(images.data.data());
        double scale = 1e-3;
        for (float v : expected.data) scale = std::max(scale, std::abs(double(v)));
        for (int64_t i = 0; i < expected.numel(); ++i)
            CHECK(std::abs(net.output()[i] - expected.data[i]) <= 2e-4 * scale);

        Graph folded = g;
        mps::fold_batch_norm(folded);
        for (const mps::Node& n : folded.nodes) CHECK(n.op != Op::batch_norm);
        const mps::Tensor after = mps::reference_forward(folded, images);
        for (int64_t i = 0; i < expected.numel(); ++i)
            CHECK(after.data[i] == doctest::Approx(expected.data[i]).epsilon(1e-3).scale(scale));
    }
}
