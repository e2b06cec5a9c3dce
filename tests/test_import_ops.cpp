// The ops torchvision's concat, squeeze-excitation and SiLU families need (issue 18): concat along
// channels, mul (equal shapes or a per-channel scale), sigmoid, hard_sigmoid, hard_swish. Each
// runs through the float engine and both quantized paths against the naive reference, imports
// from hand-built ONNX models to hand-computed values, survives an export round trip, and is
// refused clearly where the IR or the trainer cannot take it.
#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/io/onnx_export_quantized.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/quant/activation_range.h"
#include "evaluator/ref/quantized_reference.h"
#include "evaluator/ref/reference.h"
#include "evaluator/train/train_network.h"
#include "tests/graph_builders.h"
#include "tests/onnx_models.h"

#include <onnx/onnx_pb.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <map>
#include <string>
#include <vector>

using namespace mps;
using mps::test::ConvSpec;
using mps::test::GraphBuilder;
using mps::test::OnnxBuilder;
using mps::test::as_batch;
using mps::test::imported;
using mps::test::pointwise;
using mps::test::run_one;

namespace {

using test::contains;
using test::error_of;

// conv -> <op under test> -> conv -> global average pool -> fc: the op sits between two
// quantizable layers, so the second reads its output quantized.
Graph graph_around(const std::string& op) {
    GraphBuilder b({3, 8, 8}, 17);
    const std::string x = b.conv(b.input(), 8);
    std::string y;
    if (op == "concat") {
        // Three inputs of different widths (one of them the graph input) in a blocked layout.
        y = b.concat({b.relu(x), b.conv(b.input(), 5, pointwise()), b.input()});
    } else if (op == "sigmoid") {
        y = b.sigmoid(x);
    } else if (op == "hard_sigmoid") {
        y = b.hard_sigmoid(x, 1.0f / 6.0f, 0.5f);
    } else if (op == "hard_swish") {
        y = b.hard_swish(x);
    } else if (op == "silu") { // Mul(x, Sigmoid(x)): equal shapes
        y = b.mul(x, b.sigmoid(x));
    } else if (op == "squeeze_excitation") { // scale [C, 1, 1] first, as torchvision exports it
        const std::string squeezed = b.relu(b.conv(b.global_average_pool(x), 4, pointwise()));
        y = b.mul(b.hard_sigmoid(b.conv(squeezed, 8, pointwise()), 1.0f / 6.0f, 0.5f), x);
    }
    const std::string z = b.hard_swish(b.conv(y, 6));
    return b.finish(b.fully_connected(b.flatten(b.global_average_pool(z)), 10));
}

const char* const every_op[] = {"concat",     "sigmoid", "hard_sigmoid",
                                "hard_swish", "silu",    "squeeze_excitation"};

struct Setup {
    Graph graph;
    Tensor input;
    std::shared_ptr<const Calibration> calibration;
    std::shared_ptr<WeightCache> cache;

    explicit Setup(Graph g) : graph(std::move(g)) {
        input = as_batch(test::random_images(graph.input_shape, 16, 5));
        calibration = std::make_shared<const Calibration>(calibrate(
            graph, test::random_images(graph.input_shape, 24, 6), CalibrationMethod{}));
        cache = std::make_shared<WeightCache>(graph, make_weight_quantizer("uniform"));
    }
    int64_t n() const { return input.dims[0]; }
};

} // namespace

TEST_CASE("import ops: concat, mul and the activations infer shapes and count their inputs") {
    GraphBuilder b({3, 4, 4});
    const std::string c = b.conv(b.input(), 5);
    CHECK(b.shape(b.concat({c, b.input(), c})) == std::vector<int64_t>{13, 4, 4});
    const std::string scale = b.global_average_pool(c);
    CHECK(b.shape(b.mul(scale, c)) == std::vector<int64_t>{5, 4, 4});
    CHECK(b.shape(b.mul(c, scale)) == std::vector<int64_t>{5, 4, 4});
    CHECK(b.shape(b.hard_swish(b.sigmoid(b.hard_sigmoid(c)))) == std::vector<int64_t>{5, 4, 4});

    CHECK(accepts_inputs(Op::concat, 2));
    CHECK(accepts_inputs(Op::concat, 7));
    CHECK_FALSE(accepts_inputs(Op::concat, 1));
    CHECK(accepts_inputs(Op::mul, 2));
    CHECK_FALSE(accepts_inputs(Op::mul, 3));
    CHECK_FALSE(accepts_inputs(Op::sigmoid, 2));

    const std::string pooled = b.max_pool(c);
    Graph g = b.finish(pooled);
    auto refused = [&g](const std::string& name, Op op, std::vector<std::string> inputs) {
        Graph bad = g;
        Node node;
        node.name = name;
        node.op = op;
        node.inputs = std::move(inputs);
        node.output = name + "_out";
        bad.nodes.push_back(std::move(node));
        return error_of([&] { infer_shapes(bad); });
    };
    CHECK(contains(refused("lonely_cat", Op::concat, {c}),
                   "node 'lonely_cat' (concat): has 1 inputs, expected 2 or more"));
    CHECK(contains(refused("strided_cat", Op::concat, {c, pooled}),
                   "node 'strided_cat' (concat): input 1 is 5x2x2 but input 0 is 5x4x4; "
                   "channel concatenation needs equal H and W"));
    CHECK(contains(refused("bad_mul", Op::mul, {c, pooled}),
                   "node 'bad_mul' (mul): multiplies 5x4x4 by 5x2x2"));
}

TEST_CASE("import ops: the signedness of concat, mul and the activations") {
    GraphBuilder b({3, 4, 4});
    const std::string c = b.conv(b.input(), 4);
    const std::string r = b.relu(c);
    const std::string s = b.sigmoid(c), h = b.hard_sigmoid(c), w = b.hard_swish(c);
    const std::string cat_unsigned = b.concat({r, s, h}), cat_mixed = b.concat({r, c});
    const std::string mul_unsigned = b.mul(s, r), mul_mixed = b.mul(w, r);
    const auto u = unsigned_values(b.finish(mul_mixed));
    CHECK(u.at(s));
    CHECK(u.at(h));
    CHECK_FALSE(u.at(w));
    CHECK(u.at(cat_unsigned));
    CHECK_FALSE(u.at(cat_mixed));
    CHECK(u.at(mul_unsigned));
    CHECK_FALSE(u.at(mul_mixed));
}

TEST_CASE("import ops: the naive reference computes each op by its definition") {
    Tensor a({1, 2, 1, 2}), b({1, 1, 1, 2});
    a.data = {1.0f, -2.0f, 3.0f, -4.0f};
    b.data = {5.0f, 6.0f};
    CHECK(reference_concat({&a, &b}).data == std::vector<float>{1, -2, 3, -4, 5, 6});
    Tensor scale({1, 2, 1, 1});
    scale.data = {2.0f, -1.0f};
    CHECK(reference_mul(scale, a).data == std::vector<float>{2, -4, -3, 4});
    CHECK(reference_mul(a, a).data == std::vector<float>{1, 4, 9, 16});
    Tensor x({1, 1, 1, 4});
    x.data = {-4.0f, -1.0f, 0.0f, 2.0f};
    const Tensor sig = reference_sigmoid(x);
    CHECK(sig.data[2] == 0.5f);
    CHECK(sig.data[3] == doctest::Approx(0.8807970779778823));
    CHECK(reference_hard_sigmoid(x, 0.2f, 0.5f).data == std::vector<float>{0.0f, 0.3f, 0.5f, 0.9f});
    const Tensor hs = reference_hard_swish(x);
    CHECK(hs.data[0] == 0.0f);
    CHECK(hs.data[1] == doctest::Approx(-1.0 / 3.0));
    CHECK(hs.data[3] == doctest::Approx(2.0 * (2.0 / 6.0 + 0.5)));
}

TEST_CASE("import ops: the float engine and both quantized paths match the reference") {
    for (const char* op : every_op) {
        CAPTURE(op);
        const Setup s(graph_around(op));
        const Tensor want = reference_forward(s.graph, s.input);
        InferenceEngine engine(s.graph, s.n());
        CHECK(test::relative_max_diff(engine.run(s.input.data.data(), s.n()), want) < 1e-5);

        // The fake path at 32 bits is the float function.
        QuantizedNetwork fake(s.graph, s.calibration, s.cache, ExecutionPath::fake, s.n());
        fake.set_policy(BitPolicy::uniform(s.graph, 32, 32));
        CHECK(test::relative_max_diff(fake.run(s.input.data.data(), s.n()), want) < 1e-5);

        // W8A8: fake against the naive quantized reference, integer against fake.
        const BitPolicy w8a8 = BitPolicy::uniform(s.graph, 8, 8);
        fake.set_policy(w8a8);
        const Tensor want_q = reference_quantized_forward(s.graph, s.input, w8a8,
                                                          s.cache->quantizer(), *s.calibration);
        Tensor from_fake(want_q.dims);
        const float* f = fake.run(s.input.data.data(), s.n());
        from_fake.data.assign(f, f + want_q.numel());
        CHECK(test::relative_max_diff(from_fake.data.data(), want_q) < 1e-4);
        QuantizedNetwork integer(s.graph, s.calibration, s.cache, ExecutionPath::integer, s.n());
        integer.set_policy(w8a8);
        CHECK(test::relative_max_diff(integer.run(s.input.data.data(), s.n()), from_fake) < 2e-2);
    }
}

TEST_CASE("import ops: export then import keeps every new op and attribute") {
    for (const char* op : every_op) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        const std::string bytes = export_onnx_bytes(g);
        onnx::ModelProto model;
        REQUIRE(model.ParseFromString(bytes));
        // HardSwish is opset 14; every graph here has one.
        CHECK(model.opset_import(0).version() == 14);
        const Graph back = import_onnx_bytes(bytes, "round_trip.onnx");
        REQUIRE(back.nodes.size() == g.nodes.size());
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            CAPTURE(g.nodes[i].name);
            CHECK(back.nodes[i].name == g.nodes[i].name);
            CHECK(back.nodes[i].op == g.nodes[i].op);
            CHECK(back.nodes[i].inputs.size() == g.nodes[i].inputs.size());
            CHECK(back.nodes[i].alpha == g.nodes[i].alpha);
            CHECK(back.nodes[i].beta == g.nodes[i].beta);
            CHECK(back.shapes.at(back.nodes[i].output) == g.shapes.at(g.nodes[i].output));
        }
        const Tensor x = as_batch(test::random_images(g.input_shape, 3, 9));
        const Tensor want = reference_forward(g, x), got = reference_forward(back, x);
        CHECK(want.data == got.data);
    }
    GraphBuilder b({2, 3, 3});
    const Graph plain = b.finish(b.sigmoid(b.conv(b.input(), 2)));
    onnx::ModelProto model;
    REQUIRE(model.ParseFromString(export_onnx_bytes(plain)));
    CHECK(model.opset_import(0).version() == 13); // no HardSwish: opset 13 as before
}

TEST_CASE("import ops: fine-tuning refuses the new ops by name instead of crashing") {
    for (const char* op : every_op) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        const std::string message =
            error_of([&] { TrainNetwork net(g, 2, NetworkMode::training); });
        CHECK(contains(message, "fine-tuning does not support"));
        CHECK(contains(message, "yet"));
    }
    GraphBuilder b({2, 3, 3});
    const Graph g = b.finish(b.hard_swish(b.conv(b.input(), 2)));
    CHECK(contains(error_of([&] { TrainNetwork net(g, 2, NetworkMode::training); }),
                   "node 'hard_swish1' (hard_swish): fine-tuning does not support hard_swish yet"));
}

// ---- ONNX import from hand-built models ---------------------------------------------------------

TEST_CASE("import ops: Concat along channels (axis 1 or -3) joins its inputs in order") {
    for (const int64_t axis : {1, -3}) {
        CAPTURE(axis);
        OnnxBuilder m({2, 1, 2}, 14);
        m.node("Relu", "relu", {"x"}, {"r"});
        OnnxBuilder::integer(m.node("Concat", "cat", {"x", "r", "x"}, {"y"}), "axis", axis);
        const Graph g = imported(m, "y");
        REQUIRE(g.nodes.size() == 2);
        CHECK(g.nodes[1].op == Op::concat);
        CHECK(g.shapes.at("y") == std::vector<int64_t>{6, 1, 2});
        CHECK(run_one(g, {1, -2, 3, -4}) ==
              std::vector<float>{1, -2, 3, -4, 1, 0, 3, 0, 1, -2, 3, -4});
    }
    OnnxBuilder one({2, 1, 2}, 14); // a one-input Concat is removed like an Identity
    OnnxBuilder::integer(one.node("Concat", "cat", {"x"}, {"c"}), "axis", 1);
    one.node("Relu", "relu", {"c"}, {"y"});
    const Graph g = imported(one, "y");
    REQUIRE(g.nodes.size() == 1);
    CHECK(g.nodes[0].inputs == std::vector<std::string>{"x"});
}

TEST_CASE("import ops: Concat on another axis is refused naming the node") {
    for (const int64_t axis : {2, 3, 0, -1}) {
        CAPTURE(axis);
        OnnxBuilder m({2, 1, 2}, 14);
        OnnxBuilder::integer(m.node("Concat", "cat_h", {"x", "x"}, {"y"}), "axis", axis);
        CHECK(contains(error_of([&] { imported(m, "y"); }),
                       "test.onnx: node 'cat_h' (Concat): concatenation along axis " +
                           std::to_string(axis) +
                           " is not supported; only along channels (axis 1 of [N, C, H, W])"));
    }
    OnnxBuilder m({2, 1, 2}, 14);
    m.node("Concat", "no_axis", {"x", "x"}, {"y"});
    CHECK(contains(error_of([&] { imported(m, "y"); }), "node 'no_axis' (Concat): has no axis"));
}

TEST_CASE("import ops: Sigmoid, HardSigmoid (default and PyTorch attributes) and HardSwish") {
    const std::vector<float> x{-4.0f, -1.0f, 0.0f, 2.0f};
    OnnxBuilder m({1, 2, 2}, 14);
    m.node("Sigmoid", "sig", {"x"}, {"s"});
    m.node("HardSigmoid", "hsig_default", {"x"}, {"h"});
    auto& torch_style = m.node("HardSigmoid", "hsig_torch", {"x"}, {"t"});
    OnnxBuilder::real(torch_style, "alpha", 1.0f / 6.0f);
    OnnxBuilder::real(torch_style, "beta", 0.5f);
    m.node("HardSwish", "hswish", {"x"}, {"w"});
    OnnxBuilder::integer(m.node("Concat", "all", {"s", "h", "t", "w"}, {"y"}), "axis", 1);
    const Graph g = imported(m, "y");
    CHECK(g.find_node("hsig_default")->alpha == 0.2f);
    CHECK(g.find_node("hsig_default")->beta == 0.5f);
    CHECK(g.find_node("hsig_torch")->alpha == 1.0f / 6.0f);
    const std::vector<double> want{
        1 / (1 + std::exp(4.0)), 1 / (1 + std::exp(1.0)), 0.5, 1 / (1 + std::exp(-2.0)), // sigmoid
        0.0, 0.3, 0.5, 0.9,                                                             // 0.2x+0.5
        0.0, 1.0 / 3.0, 0.5, 5.0 / 6.0,                                                 // x/6+0.5
        0.0, -1.0 / 3.0, 0.0, 2.0 * 5.0 / 6.0};                                         // hardswish
    const std::vector<float> got = run_one(g, x);
    REQUIRE(got.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) {
        CAPTURE(i);
        CHECK(got[i] == doctest::Approx(want[i]).epsilon(1e-6));
    }
}

TEST_CASE("import ops: Mul of equal shapes and of a per-channel scale, either side") {
    OnnxBuilder m({2, 1, 2}, 14);
    m.node("GlobalAveragePool", "gap", {"x"}, {"g"});
    m.node("Mul", "scale_first", {"g", "x"}, {"a"});
    m.node("Mul", "scale_second", {"x", "g"}, {"b"});
    m.node("Mul", "square", {"x", "x"}, {"c"});
    OnnxBuilder::integer(m.node("Concat", "all", {"a", "b", "c"}, {"y"}), "axis", 1);
    const Graph g = imported(m, "y");
    CHECK(g.find_node("scale_first")->op == Op::mul);
    CHECK(g.shapes.at("a") == std::vector<int64_t>{2, 1, 2});
    // x = [[1, 3], [2, 6]]: channel means 2 and 4.
    CHECK(run_one(g, {1, 3, 2, 6}) ==
          std::vector<float>{2, 6, 8, 24, 2, 6, 8, 24, 1, 9, 4, 36});
}

TEST_CASE("import ops: Mul of incompatible shapes or by a constant is refused naming the node") {
    OnnxBuilder bad({2, 2, 2}, 14);
    bad.node("Relu", "relu", {"x"}, {"r"});
    bad.node("GlobalAveragePool", "gap", {"r"}, {"g"});
    OnnxBuilder::integer(bad.node("Concat", "cat", {"g", "g"}, {"gg"}), "axis", 1);
    bad.node("Mul", "se_scale", {"gg", "x"}, {"y"}); // [4, 1, 1] by [2, 2, 2]
    CHECK(contains(error_of([&] { imported(bad, "y"); }),
                   "test.onnx: node 'se_scale' (mul): multiplies 4x1x1 by 2x2x2; the "
                   "operands must have the same shape, or one must be Cx1x1 with the other's C"));

    OnnxBuilder constant({2, 2, 2}, 14);
    constant.initializer("k", Tensor({1}, 2.0f));
    constant.node("Mul", "times_two", {"x", "k"}, {"y"});
    CHECK(contains(error_of([&] { imported(constant, "y"); }),
                   "node 'times_two' (Mul): multiplies by the constant 'k'"));
}

TEST_CASE("import ops: a Pad by zero (densenet's, before its average pools) is removed") {
    OnnxBuilder m({2, 2, 2}, 14);
    m.int64_initializer("pads", {0, 0, 0, 0, 0, 0, 0, 0});
    m.node("Pad", "no_pad", {"x", "pads"}, {"p"});
    m.node("Relu", "relu", {"p"}, {"y"});
    const Graph g = imported(m, "y");
    REQUIRE(g.nodes.size() == 1);
    CHECK(g.nodes[0].inputs == std::vector<std::string>{"x"});

    OnnxBuilder real({2, 2, 2}, 14);
    real.int64_initializer("pads", {0, 0, 1, 1, 0, 0, 1, 1});
    real.node("Pad", "pad_hw", {"x", "pads"}, {"y"});
    CHECK(contains(error_of([&] { imported(real, "y"); }),
                   "node 'pad_hw' (Pad): pads [0, 0, 1, 1, 0, 0, 1, 1] are not supported; only a "
                   "Pad by zero"));
}

TEST_CASE("import ops: the quantized export writes the new ops as float ops, hard swish by opset") {
    for (const char* op : every_op) {
        CAPTURE(op);
        const Setup s(graph_around(op));
        for (const int opset : {13, 21}) {
            CAPTURE(opset);
            QuantizedExportInfo info;
            info.source_model_sha256 = std::string(64, 'a');
            info.opset = opset;
            const QuantizedModel exported =
                export_quantized_onnx_bytes(s.graph, BitPolicy::uniform(s.graph, 8, 8),
                                            s.cache->quantizer(), *s.calibration, info);
            onnx::ModelProto model;
            REQUIRE(model.ParseFromString(exported.bytes));
            std::map<std::string, int> types;
            for (const auto& node : model.graph().node()) ++types[node.op_type()];
            // HardSwish is opset 14: at 13 it is x * HardSigmoid(x).
            CHECK(types.count("HardSwish") == (opset >= 14 ? 1u : 0u));
            CHECK(types.count("HardSigmoid") >= (opset >= 14 ? 0u : 1u));
            if (std::string(op) == "concat") CHECK(types["Concat"] == 1);
            if (std::string(op) == "silu") CHECK(types["Sigmoid"] == 1);
        }
    }
}
