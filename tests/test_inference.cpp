// The oneDNN float32 engine against the naive reference, op by op and on small networks.
#include "evaluator/engine/inference.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/io/zoo.h"
#include "evaluator/ref/reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <cmath>
#include <string>

using namespace mps;
using mps::test::ConvSpec;
using mps::test::GraphBuilder;
using mps::test::PoolSpec;

namespace {

constexpr double tolerance = 1e-4;

Tensor random_batch(const Graph& graph, int64_t n, uint64_t seed) {
    test::Rng rng(seed);
    std::vector<int64_t> dims{n};
    dims.insert(dims.end(), graph.input_shape.begin(), graph.input_shape.end());
    return test::random_tensor(dims, rng, -2.0f, 2.0f);
}

// Runs `graph` on n random images through the engine (built for `batch`) and the reference, and
// returns the relative max difference of the logits.
double engine_vs_reference(const Graph& graph, int64_t n, int64_t batch, uint64_t seed = 3) {
    const Tensor input = random_batch(graph, n, seed);
    const Tensor want = reference_forward(graph, input);
    InferenceEngine engine(graph, batch);
    REQUIRE(engine.num_classes() * n == want.numel());
    return test::relative_max_diff(engine.run(input.data.data(), n), want);
}

double single_conv(std::vector<int64_t> input_shape, int64_t out_channels, const ConvSpec& spec) {
    GraphBuilder b(std::move(input_shape));
    return engine_vs_reference(b.finish(b.conv(b.input(), out_channels, spec)), 3, 3);
}

} // namespace

TEST_CASE("engine conv matches the reference across kernel shapes and attributes") {
    ConvSpec spec;
    SUBCASE("3x3 pad 1 with bias, channels not a multiple of 16") {
        CHECK(single_conv({3, 9, 9}, 20, spec) < tolerance);
    }
    SUBCASE("no bias, stride 2") {
        spec.bias = false;
        spec.stride = {2, 2};
        CHECK(single_conv({16, 10, 10}, 32, spec) < tolerance);
    }
    SUBCASE("asymmetric padding and a non-square kernel") {
        spec.kernel = {5, 3};
        spec.pad_begin = {0, 2};
        spec.pad_end = {3, 1};
        CHECK(single_conv({8, 11, 7}, 16, spec) < tolerance);
    }
    SUBCASE("dilation 2") {
        spec.dilation = {2, 2};
        spec.pad_begin = spec.pad_end = {2, 2};
        CHECK(single_conv({16, 9, 9}, 16, spec) < tolerance);
    }
    SUBCASE("groups 4") {
        spec.groups = 4;
        CHECK(single_conv({32, 8, 8}, 64, spec) < tolerance);
    }
    SUBCASE("depthwise") {
        spec.groups = 16;
        spec.stride = {2, 2};
        CHECK(single_conv({16, 9, 9}, 16, spec) < tolerance);
    }
    SUBCASE("depthwise with channel multiplier 2, odd channels") {
        spec.groups = 5;
        CHECK(single_conv({5, 6, 6}, 10, spec) < tolerance);
    }
    SUBCASE("single input channel (Fashion-MNIST stem)") {
        CHECK(single_conv({1, 28, 28}, 16, spec) < tolerance);
    }
}

TEST_CASE("engine fuses relu and clip into conv and fully connected and add") {
    GraphBuilder b({8, 6, 6});
    std::string x = b.relu(b.conv(b.input(), 16));
    x = b.clip(b.conv(x, 16), -0.25f, 0.5f);
    std::string y = b.relu(b.conv(x, 16));
    x = b.relu(b.add(x, y)); // add of two activations: binary add with relu post-op
    x = b.flatten(x);
    x = b.clip(b.fully_connected(x, 12), 0.0f, 6.0f);
    const Graph g = b.finish(b.fully_connected(x, 5));
    CHECK(engine_vs_reference(g, 4, 4) < tolerance);
}

TEST_CASE("engine standalone relu and clip on the input") {
    GraphBuilder b({3, 5, 5});
    std::string x = b.clip(b.relu(b.input()), 0.1f, 0.9f);
    const Graph g = b.finish(b.conv(x, 4));
    CHECK(engine_vs_reference(g, 2, 2) < tolerance);
}

TEST_CASE("engine fully connected layers") {
    SUBCASE("flatten of a blocked conv output into fc, with and without bias") {
        GraphBuilder b({3, 7, 7});
        std::string x = b.flatten(b.relu(b.conv(b.input(), 20)));
        x = b.relu(b.fully_connected(x, 33, false));
        const Graph g = b.finish(b.fully_connected(x, 10));
        CHECK(engine_vs_reference(g, 5, 5) < tolerance);
    }
    SUBCASE("flatten of the raw input") {
        GraphBuilder b({2, 4, 4});
        const Graph g = b.finish(b.fully_connected(b.flatten(b.input()), 7));
        CHECK(engine_vs_reference(g, 3, 3) < tolerance);
    }
    SUBCASE("flatten of the raw input as the graph output") {
        GraphBuilder b({2, 3, 3});
        const Graph g = b.finish(b.flatten(b.input()));
        CHECK(engine_vs_reference(g, 2, 2) == 0.0);
    }
    SUBCASE("flatten as the graph output") {
        GraphBuilder b({3, 4, 4});
        const Graph g = b.finish(b.flatten(b.conv(b.input(), 17)));
        CHECK(engine_vs_reference(g, 2, 2) < tolerance);
    }
}

TEST_CASE("engine pooling: max and average (padding counted or not) and global average") {
    for (bool after_conv : {false, true}) {
        CAPTURE(after_conv);
        PoolSpec padded{{3, 3}, {2, 2}, {1, 1}, {1, 1}};
        PoolSpec asymmetric{{2, 3}, {1, 2}, {0, 1}, {1, 0}};
        for (int kind = 0; kind < 3; ++kind) {
            for (const PoolSpec& spec : {padded, asymmetric}) {
                CAPTURE(kind);
                GraphBuilder b({6, 9, 9});
                std::string x = after_conv ? b.conv(b.input(), 24) : b.input();
                x = kind == 0 ? b.max_pool(x, spec) : b.average_pool(x, spec, kind == 2);
                CHECK(engine_vs_reference(b.finish(x), 2, 2) < tolerance);
            }
        }
        GraphBuilder b({6, 7, 5});
        std::string x = after_conv ? b.conv(b.input(), 24) : b.input();
        const Graph g = b.finish(b.fully_connected(b.flatten(b.global_average_pool(x)), 4));
        CHECK(engine_vs_reference(g, 3, 3) < tolerance);
    }
}

TEST_CASE("engine residual adds: in-place sum and copied sum and binary add") {
    GraphBuilder b({4, 8, 8});
    std::string y = b.relu(b.conv(b.input(), 16));
    std::string s = b.add(b.conv(y, 16), y);  // fused sum; y is still read below, so copied
    std::string u = b.conv(y, 16);
    std::string t = b.relu(b.add(s, u));       // fused sum in place into s, then relu
    std::string v = b.relu(b.conv(t, 16));
    std::string w = b.add(t, v);                // operands are relu outputs: binary add
    const Graph g = b.finish(b.add(w, w)); // same value twice
    CHECK(engine_vs_reference(g, 3, 3) < tolerance);
}

TEST_CASE("engine residual add whose operand is also the input of the conv") {
    GraphBuilder b({16, 6, 6});
    std::string x = b.relu(b.conv(b.input(), 16));
    const Graph g = b.finish(b.add(b.conv(x, 16), x)); // accumulating in place would corrupt x
    CHECK(engine_vs_reference(g, 2, 2) < tolerance);
}

TEST_CASE("engine on a tiny resnet with batch norm (folded) matches the unfolded reference") {
    const Graph g = test::resnet_like({3, 12, 12}, {16, 24, 32}, 10);
    CHECK(engine_vs_reference(g, 4, 4) < tolerance);
}

TEST_CASE("engine matches the reference on every zoo architecture") {
    for (const std::string& name : architecture_names()) {
        CAPTURE(name);
        CHECK(engine_vs_reference(make_architecture(name, 5), 3, 3) < tolerance);
    }
}

TEST_CASE("engine runs a batch_norm that cannot be folded as a channel_affine step") {
    GraphBuilder b({16, 5, 5});
    std::string x = b.batch_norm(b.input());          // no conv before it
    std::string c = b.conv(x, 16);
    std::string r = b.relu(c);
    std::string d = b.batch_norm(c);                  // conv output read twice: not foldable
    const Graph g = b.finish(b.add(r, d));
    CHECK(engine_vs_reference(g, 2, 2) < tolerance);
}

TEST_CASE("engine handles a partial last batch and batch sizes it has seen before") {
    const Graph g = test::vgg_like({1, 16, 16}, {16, 32}, 2, 24, 10);
    const Tensor input = random_batch(g, 7, 5);
    const Tensor want = reference_forward(g, input);
    InferenceEngine engine(g, 5);
    CHECK(engine.batch() == 5);
    CHECK(engine.num_classes() == 10);
    CHECK(engine.image_size() == 256);
    auto check_slice = [&](int64_t first, int64_t n) {
        const float* got = engine.run(input.data.data() + first * 256, n);
        Tensor slice({n, 10});
        std::copy(want.data.begin() + first * 10, want.data.begin() + (first + n) * 10,
                  slice.data.begin());
        return test::relative_max_diff(got, slice);
    };
    CHECK(check_slice(0, 5) < tolerance);
    CHECK(check_slice(5, 2) < tolerance); // partial batch: own primitives, made on first use
    engine.prepare(3);                    // ... or ahead of time
    CHECK(check_slice(1, 3) < tolerance);
    CHECK(check_slice(2, 5) < tolerance); // back to the full batch
    CHECK(check_slice(4, 2) < tolerance); // the cached partial plan again
    CHECK_THROWS_AS(engine.run(input.data.data(), 6), Error);
    CHECK_THROWS_AS(engine.run(nullptr, 1), Error);
    CHECK_THROWS_AS(engine.prepare(0), Error);
}

TEST_CASE("evaluate_float scores top-1 and cross-entropy like the reference") {
    const Graph g = test::vgg_like({1, 8, 8}, {8}, 1, 16, 10);
    Dataset data;
    data.count = 11;
    data.channels = 1;
    data.height = data.width = 8;
    const Tensor input = random_batch(g, data.count, 9);
    data.images = input.data;
    for (int64_t i = 0; i < data.count; ++i) data.labels.push_back(static_cast<uint8_t>(i % 10));
    const Tensor logits = reference_forward(g, input);
    int64_t correct = 0;
    double loss = 0.0;
    for (int64_t i = 0; i < data.count; ++i) {
        const float* row = logits.data.data() + i * 10;
        correct += argmax(row, 10) == data.labels[i];
        double z = 0.0;
        for (int c = 0; c < 10; ++c) z += std::exp(static_cast<double>(row[c]));
        loss += std::log(z) - row[data.labels[i]];
    }
    const EvalResult r = evaluate_float(g, data, 4);
    CHECK(r.images == 11);
    CHECK(r.predictions.size() == 11);
    CHECK(r.correct == correct);
    CHECK(r.accuracy_percent == doctest::Approx(100.0 * correct / 11));
    CHECK(r.mean_loss == doctest::Approx(loss / 11).epsilon(1e-4));
    CHECK(r.images_per_second > 0.0);
    CHECK(evaluate_float(g, data, 4, 3).images == 3);

    data.channels = 3;
    data.height = data.width = 32;
    try {
        evaluate_float(g, data);
        FAIL("expected an input shape error");
    } catch (const Error& e) {
        CHECK(std::string(e.what()) == "model expects input 1x8x8 but the data has 3x32x32 images");
    }
}

TEST_CASE("argmax takes the first index on ties and cross-entropy is stable for large logits") {
    const float tied[] = {1.0f, 3.0f, 3.0f, -1.0f};
    CHECK(argmax(tied, 4) == 1);
    const float large[] = {1000.0f, 1000.0f};
    CHECK(cross_entropy(large, 2, 0) == doctest::Approx(std::log(2.0)));
}
