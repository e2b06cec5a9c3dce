// The channel ops DenseNet and ShuffleNet need (issue 18): channel_affine (a batch_norm no conv
// can absorb, kept by fold_batch_norm as y = a * x + b), channel_shuffle and channel_slice. Each
// runs through the float engine and both quantized paths against the naive reference, imports
// from hand-built ONNX models in the forms PyTorch writes (the chunk's shape computation folded
// at import), survives both exports, and is refused clearly where the IR or the trainer cannot
// take it.
#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/io/onnx_export_quantized.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/ref/quantized_reference.h"
#include "evaluator/ref/reference.h"
#include "evaluator/train/train_network.h"
#include "tests/graph_builders.h"
#include "tests/onnx_models.h"

#include <onnx/onnx_pb.h>

#include <doctest/doctest.h>

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
using mps::test::contains;
using mps::test::error_of;

namespace {

// conv -> <op under test> -> conv -> global average pool -> fc, BN-folded.
Graph graph_around(const std::string& op) {
    GraphBuilder b({3, 8, 8}, 23);
    const std::string x = b.conv(b.input(), 8);
    std::string y;
    if (op == "affine") { // densenet: concat -> BN -> ReLU -> conv; the BN cannot fold
        y = b.relu(b.batch_norm(b.concat({x, b.input()})));
    } else if (op == "affine_on_input") { // a BN on the graph input, read in place
        y = b.concat({x, b.batch_norm(b.input())});
    } else if (op == "shuffle") { // shufflenet: split, one branch through a conv, join, shuffle
        const std::string kept = b.channel_slice(b.relu(x), 0, 4);
        const std::string branch = b.relu(b.conv(b.channel_slice(b.relu(x), 4, 8), 4, pointwise()));
        y = b.channel_shuffle(b.concat({kept, branch}), 2);
    } else if (op == "odd_slice") { // a range off every channel block, of the graph input too
        y = b.concat({b.channel_slice(x, 3, 8), b.channel_slice(b.input(), 1, 2),
                      b.channel_shuffle(b.channel_slice(x, 1, 7), 3)});
    }
    const std::string z = b.relu(b.conv(y, 6));
    return test::folded(b.finish(b.fully_connected(b.flatten(b.global_average_pool(z)), 10)));
}

const char* const every_case[] = {"affine", "affine_on_input", "shuffle", "odd_slice"};

} // namespace

TEST_CASE("channel ops: shapes, and a bad group count or range names the node") {
    GraphBuilder b({6, 4, 4});
    CHECK(b.shape(b.channel_shuffle(b.input(), 3)) == std::vector<int64_t>{6, 4, 4});
    CHECK(b.shape(b.channel_slice(b.input(), 2, 5)) == std::vector<int64_t>{3, 4, 4});
    for (auto [begin, end] : {std::pair<int64_t, int64_t>{4, 4}, {0, 7}, {-1, 2}}) {
        Node n;
        n.name = "cut";
        n.op = Op::channel_slice;
        n.channel_begin = begin;
        n.channel_end = end;
        CHECK(contains(error_of([&] { output_shape(n, {{6, 4, 4}}); }),
                       "node 'cut' (channel_slice): channels [" + std::to_string(begin) + ", " +
                           std::to_string(end) + ") are not a non-empty range of the 6 input "
                                                 "channels"));
    }
    Node shuffle;
    shuffle.name = "mix";
    shuffle.op = Op::channel_shuffle;
    shuffle.groups = 4;
    CHECK(contains(error_of([&] { output_shape(shuffle, {{6, 4, 4}}); }),
                   "node 'mix' (channel_shuffle): 4 groups do not divide 6 channels"));
}

TEST_CASE("channel ops: the naive reference computes each op by its definition") {
    Tensor x({1, 6, 1, 1});
    x.data = {0, 1, 2, 3, 4, 5};
    Node shuffle;
    shuffle.op = Op::channel_shuffle;
    shuffle.groups = 2; // [[0, 1, 2], [3, 4, 5]] transposed
    CHECK(reference_channel_shuffle(x, shuffle).data == std::vector<float>{0, 3, 1, 4, 2, 5});
    shuffle.groups = 3; // [[0, 1], [2, 3], [4, 5]] transposed
    CHECK(reference_channel_shuffle(x, shuffle).data == std::vector<float>{0, 2, 4, 1, 3, 5});
    Node slice;
    slice.op = Op::channel_slice;
    slice.channel_begin = 1;
    slice.channel_end = 4;
    CHECK(reference_channel_slice(x, slice).data == std::vector<float>{1, 2, 3});
    Node affine;
    affine.op = Op::channel_affine;
    affine.weight = Tensor({2});
    affine.weight.data = {2.0f, -1.0f};
    affine.bias = Tensor({2});
    affine.bias.data = {0.5f, 3.0f};
    Tensor y({1, 2, 1, 2});
    y.data = {1, 2, 3, 4};
    CHECK(reference_channel_affine(y, affine).data == std::vector<float>{2.5f, 4.5f, 0, -1});
}

TEST_CASE("channel ops: fold_batch_norm keeps a batch_norm no conv can absorb as its affine map") {
    GraphBuilder b({4, 5, 5}, 5);
    const std::string c = b.conv(b.input(), 4);
    const std::string after_conv = b.batch_norm(c); // folds into the conv
    const std::string after_input = b.batch_norm(b.input());
    const std::string after_add = b.batch_norm(b.add(after_conv, after_input));
    // `c` is read by two batch_norms, so neither of them folds.
    Graph g = b.finish(b.add(after_add, b.relu(b.batch_norm(c))));
    const Tensor x = as_batch(test::random_images(g.input_shape, 3, 2));
    const Tensor want = reference_forward(g, x);
    fold_batch_norm(g);
    std::map<Op, int> ops;
    for (const Node& n : g.nodes) ++ops[n.op];
    CHECK(ops[Op::batch_norm] == 0);
    CHECK(ops[Op::channel_affine] == 4);
    CHECK(g.find_node("batch_norm1")->op == Op::channel_affine); // the name stays
    CHECK(test::relative_max_diff(reference_forward(g, x).data.data(), want) < 1e-6);

    GraphBuilder plain({4, 5, 5}, 6);
    Graph folded_conv = plain.finish(plain.batch_norm(plain.conv(plain.input(), 4)));
    fold_batch_norm(folded_conv);
    REQUIRE(folded_conv.nodes.size() == 1);
    CHECK(folded_conv.nodes[0].op == Op::conv); // right after its conv: folded as before
}

TEST_CASE("channel ops: the float engine and both quantized paths match the reference") {
    for (const char* op : every_case) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        const Tensor input = as_batch(test::random_images(g.input_shape, 16, 5));
        const int64_t n = input.dims[0];
        const Tensor want = reference_forward(g, input);
        InferenceEngine engine(g, n);
        CHECK(test::relative_max_diff(engine.run(input.data.data(), n), want) < 1e-5);

        const auto calibration = std::make_shared<const Calibration>(
            calibrate(g, test::random_images(g.input_shape, 24, 6), CalibrationMethod{}));
        const auto cache = std::make_shared<WeightCache>(g, make_weight_quantizer("uniform"));
        QuantizedNetwork fake(g, calibration, cache, ExecutionPath::fake, n);
        fake.set_policy(BitPolicy::uniform(g, 32, 32));
        CHECK(test::relative_max_diff(fake.run(input.data.data(), n), want) < 1e-5);

        const BitPolicy w8a8 = BitPolicy::uniform(g, 8, 8);
        fake.set_policy(w8a8);
        const Tensor want_q =
            reference_quantized_forward(g, input, w8a8, cache->quantizer(), *calibration);
        Tensor from_fake(want_q.dims);
        const float* f = fake.run(input.data.data(), n);
        from_fake.data.assign(f, f + want_q.numel());
        CHECK(test::relative_max_diff(from_fake.data.data(), want_q) < 1e-4);
        QuantizedNetwork integer(g, calibration, cache, ExecutionPath::integer, n);
        integer.set_policy(w8a8);
        CHECK(test::relative_max_diff(integer.run(input.data.data(), n), from_fake) < 2e-2);
    }
}

TEST_CASE("channel ops: export then import (and fold) gives the same graph function") {
    for (const char* op : every_case) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        Graph back = import_onnx_bytes(export_onnx_bytes(g), "round_trip.onnx");
        fold_batch_norm(back); // the affine comes back as BatchNormalization(mean 0, var 1, eps 0)
        REQUIRE(back.nodes.size() == g.nodes.size());
        for (size_t i = 0; i < g.nodes.size(); ++i) {
            CAPTURE(g.nodes[i].name);
            CHECK(back.nodes[i].name == g.nodes[i].name);
            CHECK(back.nodes[i].op == g.nodes[i].op);
            CHECK(back.nodes[i].groups == g.nodes[i].groups);
            CHECK(back.nodes[i].channel_begin == g.nodes[i].channel_begin);
            CHECK(back.nodes[i].channel_end == g.nodes[i].channel_end);
            CHECK(back.nodes[i].weight.data == g.nodes[i].weight.data);
            CHECK(back.nodes[i].bias.data == g.nodes[i].bias.data);
        }
        const Tensor x = as_batch(test::random_images(g.input_shape, 3, 9));
        CHECK(reference_forward(g, x).data == reference_forward(back, x).data);
    }
}

TEST_CASE("channel ops: the quantized export writes them as float ONNX ops") {
    const std::map<std::string, std::vector<const char*>> written = {
        {"affine", {"BatchNormalization"}},
        {"shuffle", {"Slice", "Reshape", "Transpose"}},
        {"odd_slice", {"Slice", "Transpose"}}};
    for (const auto& [op, types] : written) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        const Calibration calibration =
            calibrate(g, test::random_images(g.input_shape, 8, 6), CalibrationMethod{});
        const auto quantizer = make_weight_quantizer("uniform");
        QuantizedExportInfo info;
        info.source_model_sha256 = std::string(64, 'a');
        const QuantizedModel exported = export_quantized_onnx_bytes(
            g, BitPolicy::uniform(g, 8, 8), *quantizer, calibration, info);
        onnx::ModelProto model;
        REQUIRE(model.ParseFromString(exported.bytes));
        std::map<std::string, int> count;
        for (const auto& node : model.graph().node()) ++count[node.op_type()];
        for (const char* type : types) CHECK(count[type] >= 1);
    }
}

TEST_CASE("channel ops: fine-tuning refuses them by name instead of crashing") {
    for (const char* op : every_case) {
        CAPTURE(op);
        const Graph g = graph_around(op);
        const std::string message =
            error_of([&] { TrainNetwork net(g, 2, NetworkMode::training); });
        CHECK(contains(message, "fine-tuning does not support"));
        CHECK(contains(message, "yet"));
    }
    GraphBuilder b({2, 3, 3});
    const Graph g = test::folded(b.finish(b.batch_norm(b.input())));
    CHECK(contains(error_of([&] { TrainNetwork net(g, 2, NetworkMode::training); }),
                   "node 'batch_norm0' (channel_affine): fine-tuning does not support "
                   "channel_affine yet"));
}

// ---- ONNX import from hand-built models, in the forms torch.onnx writes -------------------------

namespace {

// x.chunk(2, dim=1) as torchvision 0.14 exports it: Shape -> Gather(1) -> (+1) / 2 -> * 1, * 2
// -> two Slices; then the halves swapped and shuffled (Reshape, Transpose, Reshape).
OnnxBuilder chunk_and_shuffle(std::vector<int64_t> grouped_shape) {
    OnnxBuilder m({4, 1, 1}, 13);
    m.node("Relu", "relu", {"x"}, {"r"});
    m.node("Shape", "shape", {"r"}, {"s"});
    m.int64_constant("one", {1});
    m.int64_constant("zero", {0});
    m.int64_constant("two", {2});
    OnnxBuilder::integer(m.node("Gather", "channels", {"s", "one"}, {"c"}), "axis", 0);
    m.node("Add", "plus_one", {"c", "one"}, {"c1"});
    m.node("Div", "half", {"c1", "two"}, {"h"});
    m.node("Mul", "end_first", {"h", "one"}, {"e1"});
    m.node("Mul", "end_second", {"h", "two"}, {"e2"});
    m.node("Slice", "first", {"r", "zero", "e1", "one"}, {"a"});
    m.node("Slice", "second", {"r", "e1", "e2", "one"}, {"b"});
    OnnxBuilder::integer(m.node("Concat", "swap", {"b", "a"}, {"cat"}), "axis", 1);
    m.int64_initializer("grouped", grouped_shape);
    m.int64_initializer("merged", {1, -1, 1, 1});
    m.node("Reshape", "shuffle", {"cat", "grouped"}, {"g"});
    OnnxBuilder::ints(m.node("Transpose", "transpose", {"g"}, {"t"}), "perm", {0, 2, 1, 3, 4});
    m.node("Reshape", "merge", {"t", "merged"}, {"y"});
    return m;
}

} // namespace

TEST_CASE("channel ops: PyTorch's chunk and channel shuffle import as slices and a shuffle") {
    for (const auto& grouped : std::vector<std::vector<int64_t>>{
             {1, 2, 2, 1, 1}, {0, 2, -1, 1, 1}, {-1, 2, 2, 1, 1}}) {
        CAPTURE(grouped);
        OnnxBuilder m = chunk_and_shuffle(grouped);
        const Graph g = imported(m, "y");
        std::vector<Op> ops;
        for (const Node& n : g.nodes) ops.push_back(n.op);
        CHECK(ops == std::vector<Op>{Op::relu, Op::channel_slice, Op::channel_slice, Op::concat,
                                     Op::channel_shuffle});
        CHECK(g.find_node("first")->channel_end == 2);
        CHECK(g.find_node("second")->channel_begin == 2);
        CHECK(g.find_node("shuffle")->groups == 2);
        CHECK(g.find_node("shuffle")->output == "y");
        // relu([1, -2, 3, 4]) = [1, 0, 3, 4]; halves swapped [3, 4, 1, 0]; shuffled [3, 1, 4, 0].
        CHECK(run_one(g, {1, -2, 3, 4}) == std::vector<float>{3, 1, 4, 0});
    }
}

TEST_CASE("channel ops: Split along channels imports as one slice per output") {
    for (const int64_t opset : {11, 13}) {
        CAPTURE(opset);
        OnnxBuilder m({5, 1, 1}, opset);
        std::vector<std::string> inputs{"x"};
        if (opset >= 13) {
            m.int64_initializer("sizes", {2, 3});
            inputs.push_back("sizes");
        }
        auto& split = m.node("Split", "split", inputs, {"a", "b"});
        OnnxBuilder::integer(split, "axis", 1);
        if (opset < 13) OnnxBuilder::ints(split, "split", {2, 3});
        m.node("Relu", "relu", {"b"}, {"rb"});
        OnnxBuilder::integer(m.node("Concat", "cat", {"rb", "a"}, {"y"}), "axis", 1);
        const Graph g = imported(m, "y");
        CHECK(g.find_node("split")->channel_end == 2);
        CHECK(g.find_node("split_1")->channel_begin == 2);
        CHECK(run_one(g, {1, 2, -3, 4, 5}) == std::vector<float>{0, 4, 5, 1, 2});
    }
}

TEST_CASE("channel ops: what they cannot express is refused naming the node") {
    OnnxBuilder rows({4, 2, 2}, 13);
    rows.int64_initializer("starts", {0});
    rows.int64_initializer("ends", {1});
    rows.int64_initializer("axes", {2});
    rows.node("Slice", "top_row", {"x", "starts", "ends", "axes"}, {"y"});
    CHECK(contains(error_of([&] { imported(rows, "y"); }),
                   "test.onnx: node 'top_row' (Slice): slicing axis 2 from 0 to 1 by 1 is not "
                   "supported; only a non-empty channel range (axis 1, step 1)"));

    OnnxBuilder transpose_alone({4, 2, 2}, 13);
    transpose_alone.int64_initializer("grouped", {1, 2, 2, 2, 2});
    transpose_alone.node("Reshape", "grouping", {"x", "grouped"}, {"y"});
    CHECK(contains(error_of([&] { imported(transpose_alone, "y"); }),
                   "node 'grouping' (Reshape): reshape to [1, 2, 2, 2, 2] is not supported"));

    OnnxBuilder batch_math({4, 2, 2}, 13);
    batch_math.node("Shape", "shape", {"x"}, {"s"});
    batch_math.int64_constant("zero", {0});
    batch_math.int64_constant("two", {2});
    OnnxBuilder::integer(batch_math.node("Gather", "batch", {"s", "zero"}, {"n"}), "axis", 0);
    batch_math.node("Mul", "double_batch", {"n", "two"}, {"n2"});
    batch_math.int64_initializer("rest", {-1});
    OnnxBuilder::integer(batch_math.node("Concat", "target", {"n2", "rest"}, {"t"}), "axis", 0);
    batch_math.node("Reshape", "reshape", {"x", "t"}, {"y"});
    CHECK(contains(error_of([&] { imported(batch_math, "y"); }),
                   "node 'double_batch' (Mul): cannot evaluate this shape computation at import: "
                   "Mul computes with the batch size"));

    // x.view(x.size(0), -1) with a dynamic batch: Shape -> Gather(0) -> Unsqueeze -> Concat.
    OnnxBuilder flatten({4, 2, 2}, 13);
    flatten.node("Shape", "shape", {"x"}, {"s"});
    OnnxBuilder::integer(flatten.node("Constant", "scalar_zero", {}, {"zero"}), "value_int", 0);
    flatten.int64_constant("axes", {0});
    OnnxBuilder::integer(flatten.node("Gather", "batch", {"s", "zero"}, {"n"}), "axis", 0);
    flatten.node("Unsqueeze", "as_list", {"n", "axes"}, {"n1"});
    flatten.int64_initializer("rest", {-1});
    OnnxBuilder::integer(flatten.node("Concat", "target", {"n1", "rest"}, {"t"}), "axis", 0);
    flatten.node("Reshape", "reshape", {"x", "t"}, {"y"});
    const Graph g = imported(flatten, "y");
    REQUIRE(g.nodes.size() == 1);
    CHECK(g.nodes[0].op == Op::flatten);
}

TEST_CASE("channel ops: the shape computations fold Slice, Squeeze, Cast, Sub and Mul too") {
    // x.view(x.size(0), x.size(1) * x.size(2) * x.size(3)) written the long way round.
    OnnxBuilder m({3, 2, 2}, 13);
    m.node("Shape", "shape", {"x"}, {"s"});
    m.int64_initializer("begin", {0});
    m.int64_initializer("one", {1});
    m.int64_initializer("zero_axis", {0});
    m.node("Slice", "batch", {"s", "begin", "one"}, {"b"}); // [batch]
    const char* dims[] = {"c", "h", "w"};
    for (int i = 0; i < 3; ++i) {
        m.int64_initializer(std::string("at_") + dims[i], {i + 1});
        m.node("Slice", std::string("pick_") + dims[i],
               {"s", std::string("at_") + dims[i], std::string("at_") + dims[i] + "_end"},
               {std::string(dims[i]) + "_list"});
        m.int64_initializer(std::string("at_") + dims[i] + "_end", {i + 2});
        m.node("Squeeze", std::string("scalar_") + dims[i],
               {std::string(dims[i]) + "_list", "zero_axis"}, {dims[i]});
    }
    m.node("Mul", "ch", {"c", "h"}, {"ch"});
    m.node("Mul", "chw", {"ch", "w"}, {"chw"});
    m.int64_initializer("nothing", {0});
    m.node("Sub", "same", {"chw", "nothing"}, {"chw0"});
    OnnxBuilder::integer(m.node("Cast", "as_int64", {"chw0"}, {"chw64"}), "to",
                         onnx::TensorProto::INT64);
    m.node("Unsqueeze", "as_list", {"chw64", "zero_axis"}, {"features"});
    OnnxBuilder::integer(m.node("Concat", "target", {"b", "features"}, {"t"}), "axis", 0);
    m.node("Reshape", "flatten", {"x", "t"}, {"y"});
    const Graph g = imported(m, "y");
    REQUIRE(g.nodes.size() == 1);
    CHECK(g.nodes[0].op == Op::flatten);
    CHECK(g.shapes.at("y") == std::vector<int64_t>{12});

    OnnxBuilder cast_float({3, 2, 2}, 13);
    cast_float.node("Shape", "shape", {"x"}, {"s"});
    OnnxBuilder::integer(cast_float.node("Cast", "to_float", {"s"}, {"f"}), "to",
                         onnx::TensorProto::FLOAT);
    cast_float.node("Reshape", "reshape", {"x", "f"}, {"y"});
    CHECK(contains(error_of([&] { imported(cast_float, "y"); }),
                   "node 'to_float' (Cast): cannot evaluate this shape computation at import: "
                   "Cast of a shape to type 1 is not folded (only to INT64 or INT32)"));
}
