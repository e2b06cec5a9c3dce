// ONNX import/export: round trips are bit-exact, the PyTorch fixtures map onto the expected IR,
// every supported ONNX idiom (built here as protobufs) imports as documented, and every kind of
// bad input is a clear mps::Error.
#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/ir/graph.h"
#include "tests/graph_builders.h"
#include "tests/onnx_models.h"
#include "tests/temp_dir.h"

#include <onnx/onnx_pb.h>

#include <doctest/doctest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <string>
#include <unistd.h>

using namespace mps;
using test::TempDir;

namespace {

const std::string data_dir = std::string(MPSEARCH_SOURCE_DIR) + "/tests/data/";

using test::contains;
using test::error_of;

bool bit_identical(const Tensor& a, const Tensor& b) {
    // memcmp of two empty tensors would get null pointers, which UBSan rightly reports
    return a.dims == b.dims && a.data.size() == b.data.size() &&
           (a.data.empty() ||
            std::memcmp(a.data.data(), b.data.data(), a.data.size() * sizeof(float)) == 0);
}

void check_same_node(const Node& a, const Node& b) {
    INFO("node " << a.name);
    CHECK(a.name == b.name);
    CHECK(a.op == b.op);
    CHECK(a.inputs == b.inputs);
    CHECK(a.output == b.output);
    CHECK(a.kernel == b.kernel);
    CHECK(a.stride == b.stride);
    CHECK(a.pad_begin == b.pad_begin);
    CHECK(a.pad_end == b.pad_end);
    CHECK(a.dilation == b.dilation);
    CHECK(a.groups == b.groups);
    CHECK(a.count_include_pad == b.count_include_pad);
    if (a.op == Op::clip) {
        CHECK(std::memcmp(&a.clip_min, &b.clip_min, sizeof(float)) == 0);
        CHECK(std::memcmp(&a.clip_max, &b.clip_max, sizeof(float)) == 0);
    }
    if (a.op == Op::batch_norm) CHECK(std::memcmp(&a.epsilon, &b.epsilon, sizeof(float)) == 0);
    CHECK(bit_identical(a.weight, b.weight));
    CHECK(bit_identical(a.bias, b.bias));
    CHECK(bit_identical(a.mean, b.mean));
    CHECK(bit_identical(a.var, b.var));
}

void check_same_graph(const Graph& a, const Graph& b) {
    CHECK(a.input == b.input);
    CHECK(a.input_shape == b.input_shape);
    CHECK(a.output == b.output);
    CHECK(a.shapes == b.shapes);
    REQUIRE(a.nodes.size() == b.nodes.size());
    for (size_t i = 0; i < a.nodes.size(); ++i) check_same_node(a.nodes[i], b.nodes[i]);
}

// Export names the graph output value "logits"; rename it in the expected graph to match.
Graph with_output_named_logits(Graph g) {
    for (Node& n : g.nodes) {
        if (n.output == g.output) n.output = "logits";
    }
    g.output = "logits";
    infer_shapes(g);
    return g;
}

// Every op and attribute the IR has: grouped, dilated, asymmetric-padded conv without bias, BN,
// clip with an infinite bound, both pools with padding, a residual add, flatten, fc.
Graph every_op_graph() {
    test::GraphBuilder b({3, 12, 12}, 11);
    test::ConvSpec stem;
    stem.pad_begin = {1, 0};
    stem.pad_end = {2, 1};
    std::string x = b.clip(b.batch_norm(b.conv(b.input(), 8, stem)), 0.0f, 6.0f); // 8x13x11
    test::ConvSpec depthwise;
    depthwise.groups = 8;
    depthwise.dilation = {2, 1};
    depthwise.pad_begin = {2, 1};
    depthwise.pad_end = {2, 1};
    depthwise.bias = false;
    std::string y = b.relu(b.conv(x, 8, depthwise));
    std::string sum = b.add(x, y);
    test::PoolSpec max_pool{{3, 2}, {2, 2}, {1, 0}, {0, 1}};
    std::string p = b.max_pool(sum, max_pool);
    std::string q = b.average_pool(p, {{3, 3}, {1, 1}, {1, 1}, {1, 1}}, true);
    std::string r = b.average_pool(q, {{2, 2}, {1, 1}, {0, 0}, {1, 1}}, false);
    test::ConvSpec grouped;
    grouped.groups = 2;
    grouped.stride = {2, 1};
    std::string c = b.conv(r, 6, grouped);
    std::string g = b.clip(b.global_average_pool(c), -std::numeric_limits<float>::infinity(), 3.5f);
    std::string logits = b.fully_connected(b.flatten(g), 10);
    Graph graph = b.finish(logits);
    // Values whose bits a lossy path would change.
    graph.nodes[0].weight.data[0] = -0.0f;
    graph.nodes[0].weight.data[1] = 1e-42f; // denormal
    graph.nodes[0].weight.data[2] = std::nextafter(1.0f, 2.0f);
    return graph;
}

using test::OnnxBuilder;

Tensor random(std::vector<int64_t> dims, uint64_t seed) {
    test::Rng rng(seed);
    return test::random_tensor(std::move(dims), rng);
}

Tensor scalar(float v) {
    Tensor t;
    t.data = {v};
    return t;
}

// A 1x1 conv 2->4 on a 2x3x3 input, output "c": the start of most hand-built models.
OnnxBuilder conv_model(int64_t opset = 13) {
    OnnxBuilder m({2, 3, 3}, opset);
    m.initializer("w", random({4, 2, 1, 1}, 3));
    m.node("Conv", "conv", {"x", "w"}, {"c"});
    return m;
}

void write_file(const std::string& path, const std::string& bytes) {
    std::ofstream(path, std::ios::binary)
        .write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

std::string read_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

std::vector<std::string> node_names(const Graph& g) {
    std::vector<std::string> names;
    for (const Node& n : g.nodes) names.push_back(n.name);
    return names;
}

std::vector<Op> node_ops(const Graph& g) {
    std::vector<Op> ops;
    for (const Node& n : g.nodes) ops.push_back(n.op);
    return ops;
}

} // namespace

// ---- round trips
// ---------------------------------------------------------------------------------

TEST_CASE("onnx: export then import gives the identical graph, bit for bit") {
    Graph graph = every_op_graph();
    Graph back = import_onnx_bytes(export_onnx_bytes(graph), "round_trip.onnx");
    check_same_graph(back, with_output_named_logits(graph));
}

TEST_CASE("onnx: a ResNet-like graph survives a round trip through a file, written atomically") {
    TempDir dir;
    Graph graph = test::resnet_like({3, 16, 16}, {8, 16});
    std::string path = dir.file("resnet.onnx");
    export_onnx(graph, path);
    check_same_graph(import_onnx(path), with_output_named_logits(graph));
    // Overwriting keeps no temporary file behind.
    export_onnx(graph, path);
    int files = 0;
    for (const auto& entry : std::filesystem::directory_iterator(dir.path()))
        files += entry.is_regular_file();
    CHECK(files == 1);
    CHECK(contains(error_of([&] { export_onnx(graph, dir.file("no/such/dir/x.onnx")); }),
                   "cannot write"));
}

TEST_CASE("onnx: export writes opset 13 with named nodes, a symbolic batch and BN kept") {
    Graph graph = every_op_graph();
    onnx::ModelProto model;
    REQUIRE(model.ParseFromString(export_onnx_bytes(graph)));
    CHECK(model.ir_version() == 7);
    CHECK(model.producer_name() == "mpsearch");
    REQUIRE(model.opset_import_size() == 1);
    CHECK(model.opset_import(0).version() == 13);
    const auto& g = model.graph();
    REQUIRE(g.input_size() == 1);
    CHECK(g.input(0).name() == "input");
    const auto& in_shape = g.input(0).type().tensor_type().shape();
    REQUIRE(in_shape.dim_size() == 4);
    CHECK(in_shape.dim(0).dim_param() == "batch");
    CHECK(in_shape.dim(1).dim_value() == 3);
    REQUIRE(g.output_size() == 1);
    CHECK(g.output(0).name() == "logits");
    const auto& out_shape = g.output(0).type().tensor_type().shape();
    REQUIRE(out_shape.dim_size() == 2);
    CHECK(out_shape.dim(1).dim_value() == 10);
    REQUIRE(g.node_size() == static_cast<int>(graph.nodes.size()));
    std::vector<std::string> ops;
    for (int i = 0; i < g.node_size(); ++i) {
        CHECK(g.node(i).name() == graph.nodes[static_cast<size_t>(i)].name);
        ops.push_back(g.node(i).op_type());
    }
    CHECK(ops == std::vector<std::string>{"Conv", "BatchNormalization", "Clip", "Conv", "Relu",
                                          "Add", "MaxPool", "AveragePool", "AveragePool", "Conv",
                                          "GlobalAveragePool", "Clip", "Flatten", "Gemm"});
}

// ---- the PyTorch fixtures
// ------------------------------------------------------------------------

TEST_CASE("onnx: the PyTorch model (opset 13, BN folded by PyTorch) imports as expected") {
    Graph g = import_onnx(data_dir + "pytorch_cnn.onnx");
    CHECK(g.input == "input");
    CHECK(g.input_shape == std::vector<int64_t>{1, 28, 28});
    CHECK(g.output == "logits");
    CHECK(node_names(g) ==
          std::vector<std::string>{
              "/features/features.0/Conv", "/features/features.2/Clip", "/features/features.3/Conv",
              "/features/features.5/Clip", "/features/features.6/Conv", "/features/features.7/Relu",
              "/features/features.8/MaxPool", "/features/features.9/Conv",
              "/features/features.10/Relu", "/features/features.11/Conv",
              "/features/features.12/Relu", "/features/features.13/GlobalAveragePool",
              "/flatten/Flatten", "/classifier/Gemm"});
    CHECK(node_ops(g) == std::vector<Op>{Op::conv, Op::clip, Op::conv, Op::clip, Op::conv, Op::relu,
                                         Op::max_pool, Op::conv, Op::relu, Op::conv, Op::relu,
                                         Op::global_average_pool, Op::flatten,
                                         Op::fully_connected});
    const Node* depthwise = g.find_node("/features/features.3/Conv");
    REQUIRE(depthwise);
    CHECK(depthwise->groups == 16);
    CHECK(depthwise->weight.dims == std::vector<int64_t>{16, 1, 3, 3});
    CHECK(depthwise->bias.dims == std::vector<int64_t>{16}); // BN folded in by PyTorch
    const Node* relu6 = g.find_node("/features/features.2/Clip");
    CHECK(relu6->clip_min == 0.0f);
    CHECK(relu6->clip_max == 6.0f);
    const Node* strided = g.find_node("/features/features.9/Conv");
    CHECK(strided->stride == Dims2{2, 2});
    CHECK(strided->pad_begin == Dims2{1, 1});
    CHECK(g.shapes.at(strided->output) == std::vector<int64_t>{48, 7, 7});
    CHECK(g.shapes.at(g.find_node("/features/features.8/MaxPool")->output) ==
          std::vector<int64_t>{32, 14, 14});
    const Node* fc = g.find_node("/classifier/Gemm");
    CHECK(fc->weight.dims == std::vector<int64_t>{10, 48});
    CHECK(g.shapes.at("logits") == std::vector<int64_t>{10});
}

TEST_CASE("onnx: the opset 11 PyTorch variant keeps BN and Reshape; folding it matches PyTorch's") {
    Graph g = import_onnx(data_dir + "pytorch_cnn_opset11.onnx");
    CHECK(node_ops(g) ==
          std::vector<Op>{Op::conv, Op::batch_norm, Op::clip, Op::conv, Op::batch_norm, Op::clip,
                          Op::conv, Op::relu, Op::max_pool, Op::conv, Op::relu, Op::conv, Op::relu,
                          Op::global_average_pool, Op::flatten, Op::fully_connected});
    CHECK(g.nodes[14].name == "/Reshape");
    CHECK(g.nodes[1].epsilon == doctest::Approx(1e-5));
    fold_batch_norm(g);
    Graph folded_by_pytorch = import_onnx(data_dir + "pytorch_cnn.onnx");
    REQUIRE(g.nodes.size() == folded_by_pytorch.nodes.size());
    for (size_t i = 0; i < g.nodes.size(); ++i) {
        const Node& ours = g.nodes[i];
        const Node& theirs = folded_by_pytorch.nodes[i];
        INFO("node " << theirs.name);
        CHECK(ours.op == theirs.op);
        CHECK(ours.weight.dims == theirs.weight.dims);
        CHECK(test::relative_max_diff(ours.weight.data.data(), theirs.weight) < 1e-5);
        CHECK(ours.bias.dims == theirs.bias.dims);
        if (!theirs.bias.empty())
            CHECK(test::relative_max_diff(ours.bias.data.data(), theirs.bias) < 1e-5);
    }
}

// ---- hand-built ONNX idioms
// ----------------------------------------------------------------------

TEST_CASE("onnx: MatMul followed by Add of a 1-D constant becomes one fully connected layer") {
    OnnxBuilder m({2, 2, 3});
    Tensor w = random({12, 5}, 1), bias = random({5}, 2);
    m.initializer("w", w);
    m.initializer("b", bias, /*raw=*/false);
    m.node("Flatten", "flat", {"x"}, {"f"});
    m.node("MatMul", "fc", {"f", "w"}, {"mm"});
    m.node("Add", "fc_bias", {"mm", "b"}, {"y"});
    m.output("y");
    Graph g = m.import();
    REQUIRE(g.nodes.size() == 2);
    const Node& fc = g.nodes[1];
    CHECK(fc.op == Op::fully_connected);
    CHECK(fc.name == "fc");
    CHECK(fc.inputs == std::vector<std::string>{"f"});
    CHECK(fc.output == "y");
    CHECK(g.output == "y");
    CHECK(fc.weight.dims == std::vector<int64_t>{5, 12});
    for (int64_t o = 0; o < 5; ++o) {
        for (int64_t i = 0; i < 12; ++i) CHECK(fc.weight.data[o * 12 + i] == w.data[i * 5 + o]);
    }
    CHECK(bit_identical(fc.bias, bias));

    SUBCASE("a MatMul alone has no bias") {
        OnnxBuilder alone({2, 2, 3});
        alone.initializer("w", w);
        alone.node("Flatten", "flat", {"x"}, {"f"});
        alone.node("MatMul", "fc", {"f", "w"}, {"y"});
        alone.output("y");
        Graph a = alone.import();
        CHECK(a.nodes[1].op == Op::fully_connected);
        CHECK(a.nodes[1].bias.empty());
    }
}

TEST_CASE("onnx: Gemm without transB has its [in, out] weight transposed") {
    OnnxBuilder m({3, 1, 1});
    Tensor w = random({3, 4}, 5);
    m.initializer("w", w);
    m.initializer("b", random({4}, 6));
    m.node("Flatten", "flat", {"x"}, {"f"});
    m.node("Gemm", "gemm", {"f", "w", "b"}, {"y"});
    m.output("y");
    Graph g = m.import();
    CHECK(g.nodes[1].weight.dims == std::vector<int64_t>{4, 3});
    CHECK(g.nodes[1].weight.data[1] == w.data[4]); // [o=0][i=1] == [i=1][o=0]
}

TEST_CASE("onnx: Reshape to 2-D becomes flatten, with the shape from an initializer or Constant") {
    for (std::vector<int64_t> shape : {std::vector<int64_t>{-1, 36}, {0, -1}, {1, 36}, {4, -1}}) {
        for (bool from_constant : {false, true}) {
            INFO("shape " << shape[0] << "," << shape[1] << " constant " << from_constant);
            OnnxBuilder m = conv_model();
            if (from_constant)
                m.int64_constant("s", shape);
            else
                m.int64_initializer("s", shape);
            m.node("Reshape", "reshape", {"c", "s"}, {"y"});
            m.output("y");
            Graph g = m.import();
            REQUIRE(g.nodes.size() == 2);
            CHECK(g.nodes[1].op == Op::flatten);
            CHECK(g.nodes[1].name == "reshape");
            CHECK(g.shapes.at("y") == std::vector<int64_t>{36});
        }
    }
    for (std::vector<int64_t> shape :
         {std::vector<int64_t>{-1, 18}, {-1, 4, 9}, {-1, -1}, {2, 18}}) {
        OnnxBuilder m = conv_model();
        m.int64_initializer("s", shape);
        m.node("Reshape", "reshape", {"c", "s"}, {"y"});
        m.output("y");
        std::string message = error_of([&] { m.import(); });
        CHECK(contains(message, "test.onnx: node 'reshape' (Reshape): reshape to ["));
        CHECK(contains(message, "only a reshape to 2-D [batch, 36]"));
    }
}

TEST_CASE("onnx: Identity and Dropout are removed and their consumers renamed") {
    OnnxBuilder m = conv_model(12);
    m.node("Identity", "id", {"c"}, {"i"});
    m.node("Dropout", "drop", {"i"}, {"d", ""});
    m.node("Relu", "relu", {"d"}, {"r"});
    m.node("Identity", "id_out", {"r"}, {"y"});
    m.output("y");
    Graph g = m.import();
    CHECK(node_names(g) == std::vector<std::string>{"conv", "relu"});
    CHECK(g.nodes[1].inputs == std::vector<std::string>{"c"});
    CHECK(g.output == "r");
}

TEST_CASE("onnx: an Identity of a constant is that constant, also in chains out of order") {
    // PyTorch's exporter feeds shared equal tensors to later convs through Identity nodes.
    OnnxBuilder m({2, 3, 3});
    m.initializer("w", random({4, 2, 1, 1}, 3));
    m.initializer("bias", random({4}, 4));
    m.node("Conv", "conv", {"x", "w2", "b1"}, {"c"});
    m.node("Identity", "second", {"w1"}, {"w2"}); // before the node it reads
    m.node("Identity", "first", {"w"}, {"w1"});
    m.node("Identity", "bias_alias", {"bias"}, {"b1"});
    m.node("Identity", "activation", {"c"}, {"y"});
    m.output("y");
    Graph g = m.import();
    REQUIRE(node_names(g) == std::vector<std::string>{"conv"});
    CHECK(g.nodes[0].weight.data == random({4, 2, 1, 1}, 3).data);
    CHECK(g.nodes[0].bias.data == random({4}, 4).data);
}

// Max pooling as PyTorch's ceil_mode=True computes it: windows start every `stride` from -pad
// while they start inside the input or the begin padding; each takes the maximum of the input
// elements it covers. One channel, one image, square.
std::vector<float> naive_ceil_max_pool(const Tensor& x, int64_t size, int64_t kernel,
                                       int64_t stride, int64_t pad) {
    const int64_t span = size + 2 * pad - kernel;
    int64_t out = (span + stride - 1) / stride + 1;
    if ((out - 1) * stride >= size + pad) --out;
    std::vector<float> y;
    for (int64_t oy = 0; oy < out; ++oy)
        for (int64_t ox = 0; ox < out; ++ox) {
            float best = -std::numeric_limits<float>::infinity();
            for (int64_t iy = oy * stride - pad; iy < oy * stride - pad + kernel; ++iy)
                for (int64_t ix = ox * stride - pad; ix < ox * stride - pad + kernel; ++ix)
                    if (iy >= 0 && iy < size && ix >= 0 && ix < size)
                        best = std::max(best, x.data[static_cast<size_t>(iy * size + ix)]);
            y.push_back(best);
        }
    return y;
}

TEST_CASE("onnx: MaxPool ceil_mode=1 imports as end padding and pools as PyTorch does") {
    // {size, kernel, stride, pad}: a window added; one that would start in the padding (dropped,
    // so ceil equals floor); ceil equal to floor.
    const std::vector<std::array<int64_t, 4>> cases{{6, 3, 2, 0}, {5, 2, 2, 1}, {7, 3, 2, 0},
                                                    {8, 3, 3, 1}};
    for (const auto& [size, kernel, stride, pad] : cases) {
        CAPTURE(size);
        CAPTURE(kernel);
        OnnxBuilder m({1, size, size});
        auto& pool = m.node("MaxPool", "max", {"x"}, {"y"});
        OnnxBuilder::ints(pool, "kernel_shape", {kernel, kernel});
        OnnxBuilder::ints(pool, "strides", {stride, stride});
        OnnxBuilder::ints(pool, "pads", {pad, pad, pad, pad});
        OnnxBuilder::integer(pool, "ceil_mode", 1);
        m.output("y");
        Graph g = m.import();
        const Tensor x = random({1, 1, size, size}, 21);
        const std::vector<float> want = naive_ceil_max_pool(x, size, kernel, stride, pad);
        const auto side = static_cast<int64_t>(std::lround(std::sqrt(double(want.size()))));
        CHECK(g.shapes.at("y") == std::vector<int64_t>{1, side, side});
        InferenceEngine engine(g, 1);
        const float* y = engine.run(x.data.data(), 1);
        CHECK(std::vector<float>(y, y + want.size()) == want);
    }
}

TEST_CASE("onnx: ReduceMean over H and W is a global average pool, flattened without keepdims") {
    for (const int keepdims : {0, 1}) {
        CAPTURE(keepdims);
        OnnxBuilder m({3, 4, 5});
        auto& mean = m.node("ReduceMean", "mean", {"x"}, {"y"});
        OnnxBuilder::ints(mean, "axes", {-1, 2});
        OnnxBuilder::integer(mean, "keepdims", keepdims);
        m.output("y");
        Graph g = m.import();
        CHECK(g.shapes.at("y") == (keepdims ? std::vector<int64_t>{3, 1, 1}
                                            : std::vector<int64_t>{3}));
        const Tensor x = random({2, 3, 4, 5}, 31);
        InferenceEngine engine(g, 2);
        const float* y = engine.run(x.data.data(), 2);
        for (size_t plane = 0; plane < 6; ++plane) {
            double sum = 0;
            for (size_t i = 0; i < 20; ++i) sum += x.data[plane * 20 + i];
            CHECK(y[plane] == doctest::Approx(sum / 20).epsilon(1e-6));
        }
    }
    OnnxBuilder m({3, 4, 5});
    auto& channels = m.node("ReduceMean", "over_c", {"x"}, {"y"});
    OnnxBuilder::ints(channels, "axes", {1});
    m.output("y");
    const std::string message = error_of([&] { m.import(); });
    CHECK(contains(message, "node 'over_c' (ReduceMean): ReduceMean over axes [1] is not "
                            "supported; only over the spatial axes [2, 3]"));
}

TEST_CASE("onnx: AveragePool ceil_mode=1 counting its pads is refused with the fix") {
    OnnxBuilder m({1, 6, 6});
    auto& pool = m.node("AveragePool", "avg", {"x"}, {"y"});
    OnnxBuilder::ints(pool, "kernel_shape", {3, 3});
    OnnxBuilder::ints(pool, "strides", {2, 2});
    OnnxBuilder::integer(pool, "ceil_mode", 1);
    OnnxBuilder::integer(pool, "count_include_pad", 1);
    m.output("y");
    const std::string message = error_of([&] { m.import(); });
    CHECK(contains(message, "test.onnx: node 'avg' (AveragePool): ceil_mode=1 with "
                            "count_include_pad=1"));
    CHECK(contains(message, "export the model with ceil_mode=False"));
}

TEST_CASE("onnx: Clip bounds from attributes (opset < 11), Constants, initializers, or missing") {
    const float inf = std::numeric_limits<float>::infinity();
    SUBCASE("attributes") {
        OnnxBuilder m = conv_model(6);
        auto& clip = m.node("Clip", "clip", {"c"}, {"y"});
        OnnxBuilder::real(clip, "min", 0.0f);
        OnnxBuilder::real(clip, "max", 6.0f);
        m.output("y");
        Graph g = m.import();
        CHECK(g.nodes[1].clip_min == 0.0f);
        CHECK(g.nodes[1].clip_max == 6.0f);
    }
    SUBCASE("Constant and initializer inputs") {
        OnnxBuilder m = conv_model(13);
        m.constant("lo", scalar(-1.5f));
        m.initializer("hi", scalar(2.25f));
        m.node("Clip", "clip", {"c", "lo", "hi"}, {"y"});
        m.output("y");
        Graph g = m.import();
        CHECK(g.nodes[1].clip_min == -1.5f);
        CHECK(g.nodes[1].clip_max == 2.25f);
    }
    SUBCASE("missing inputs are unbounded") {
        OnnxBuilder m = conv_model(13);
        m.initializer("hi", scalar(6.0f));
        m.node("Clip", "clip", {"c", "", "hi"}, {"y"});
        m.node("Clip", "clip2", {"y"}, {"z"});
        m.output("z");
        Graph g = m.import();
        CHECK(g.nodes[1].clip_min == -inf);
        CHECK(g.nodes[1].clip_max == 6.0f);
        CHECK(g.nodes[2].clip_min == -inf);
        CHECK(g.nodes[2].clip_max == inf);
    }
}

TEST_CASE("onnx: a trailing Softmax is removed; elsewhere it is an error") {
    OnnxBuilder m = conv_model();
    m.node("Relu", "relu", {"c"}, {"r"});
    m.node("Softmax", "softmax", {"r"}, {"probs"});
    m.output("probs");
    Graph g = m.import();
    CHECK(node_names(g) == std::vector<std::string>{"conv", "relu"});
    CHECK(g.output == "r");

    OnnxBuilder middle = conv_model();
    middle.node("Softmax", "softmax", {"c"}, {"s"});
    middle.node("Relu", "relu", {"s"}, {"y"});
    middle.output("y");
    CHECK(contains(error_of([&] { middle.import(); }),
                   "node 'softmax' (Softmax): Softmax is only supported as the last node"));
}

TEST_CASE("onnx: pools, residual Add, auto_pad and BatchNormalization attributes") {
    OnnxBuilder m({2, 5, 5});
    m.initializer("w", random({2, 2, 3, 3}, 9));
    m.initializer("g", random({2}, 10));
    m.initializer("b", random({2}, 11));
    m.initializer("mean", random({2}, 12));
    m.initializer("v", Tensor({2}, 0.5f));
    auto& conv = m.node("Conv", "same", {"x", "w"}, {"c"});
    OnnxBuilder::string(conv, "auto_pad", "SAME_UPPER");
    OnnxBuilder::ints(conv, "strides", {2, 2});
    auto& bn = m.node("BatchNormalization", "bn", {"c", "g", "b", "mean", "v"}, {"n"});
    OnnxBuilder::real(bn, "epsilon", 1e-3f);
    auto& pool = m.node("AveragePool", "avg", {"n"}, {"a"});
    OnnxBuilder::ints(pool, "kernel_shape", {3, 3});
    OnnxBuilder::ints(pool, "pads", {1, 1, 1, 1});
    OnnxBuilder::integer(pool, "count_include_pad", 1);
    auto& valid = m.node("MaxPool", "max", {"a"}, {"p"});
    OnnxBuilder::ints(valid, "kernel_shape", {2, 2});
    OnnxBuilder::string(valid, "auto_pad", "VALID");
    m.node("Add", "residual", {"n", "a"}, {"s"});
    m.node("GlobalAveragePool", "gap", {"p"}, {"y"});
    m.node("Relu", "unused", {"s"}, {"dead"});
    m.output("y");
    Graph g = m.import();
    // "residual" and "unused" do not reach the output: dropped.
    CHECK(node_names(g) == std::vector<std::string>{"same", "bn", "avg", "max", "gap"});
    const Node& same = g.nodes[0];
    CHECK(same.pad_begin == Dims2{1, 1}); // 5 -> 3 with stride 2: total pad 2, 1 each side
    CHECK(same.pad_end == Dims2{1, 1});
    CHECK(g.shapes.at("c") == std::vector<int64_t>{2, 3, 3});
    CHECK(g.nodes[1].epsilon == 1e-3f);
    CHECK(g.nodes[2].count_include_pad);
    CHECK(g.shapes.at("p") == std::vector<int64_t>{2, 2, 2}); // VALID 2x2, stride 1
    CHECK(g.shapes.at("y") == std::vector<int64_t>{2, 1, 1});
}

TEST_CASE("onnx: a residual Add of two activations is kept") {
    OnnxBuilder m = conv_model();
    m.node("Relu", "relu", {"c"}, {"r"});
    m.node("Add", "residual", {"c", "r"}, {"y"});
    m.output("y");
    Graph g = m.import();
    REQUIRE(g.nodes.size() == 3);
    CHECK(g.nodes[2].op == Op::add);
    CHECK(g.nodes[2].inputs == std::vector<std::string>{"c", "r"});
}

TEST_CASE("onnx: unnamed and duplicate node names become unique; unsorted nodes are sorted") {
    OnnxBuilder m({2, 3, 3});
    m.initializer("w", random({4, 2, 1, 1}, 3));
    m.node("Relu", "", {"r1"}, {"y"});     // index 0, consumes what comes later in the file
    m.node("Relu", "act", {"c"}, {"r0"});  // index 1
    m.node("Relu", "act", {"r0"}, {"r1"}); // index 2: duplicate name
    m.node("Conv", "", {"x", "w"}, {"c"}); // index 3
    m.output("y");
    Graph g = m.import();
    CHECK(node_names(g) == std::vector<std::string>{"Conv_3", "act", "act_1", "Relu_0"});
    CHECK(g.output == "y");
}

// ---- bad input
// -----------------------------------------------------------------------------------

TEST_CASE("onnx: a missing file names the path") {
    CHECK(error_of([] { import_onnx("/nonexistent/model.onnx"); }) ==
          "/nonexistent/model.onnx: cannot open (No such file or directory); check the path");
}

TEST_CASE("onnx: truncated and random bytes are not a valid ONNX model") {
    TempDir dir;
    std::string whole = read_file(data_dir + "pytorch_cnn.onnx");
    REQUIRE(whole.size() > 1000);
    std::string path = dir.file("truncated.onnx");
    write_file(path, whole.substr(0, whole.size() / 2));
    CHECK(error_of([&] { import_onnx(path); }) ==
          path + ": not a valid ONNX model (protobuf parse failed)");

    std::mt19937 rng(5);
    std::string noise(4096, '\0');
    for (char& c : noise) c = static_cast<char>(rng());
    CHECK(contains(error_of([&] { import_onnx_bytes(noise, "noise.onnx"); }),
                   "noise.onnx: not a valid ONNX model"));
    CHECK(error_of([&] { import_onnx_bytes("", "empty.onnx"); }) ==
          "empty.onnx: not a valid ONNX model (protobuf parse failed)");
}

TEST_CASE("onnx: an unsupported op names the file, the op, the node and the supported ops") {
    OnnxBuilder m = conv_model();
    m.node("LSTM", "lstm7", {"c"}, {"y"});
    m.output("y");
    std::string message = error_of([&] { m.import(); });
    CHECK(contains(message, "test.onnx: node 'lstm7' (LSTM): op type 'LSTM' is not supported"));
    CHECK(contains(message, "supported ops: Conv, Gemm"));

    OnnxBuilder custom = conv_model();
    custom.node("FusedConv", "fc1", {"c"}, {"y"}).set_domain("com.microsoft");
    custom.output("y");
    CHECK(contains(error_of([&] { custom.import(); }), "domain 'com.microsoft' is not supported"));

    OnnxBuilder bias_add = conv_model();
    bias_add.initializer("b", random({4, 1, 1}, 4));
    bias_add.node("Add", "add_bias", {"c", "b"}, {"y"});
    bias_add.output("y");
    CHECK(contains(error_of([&] { bias_add.import(); }),
                   "node 'add_bias' (Add): adds the constant 'b'; adding a constant is only "
                   "supported as the bias right after a MatMul"));
}

TEST_CASE("onnx: non-float weights, inputs and external data are clear errors") {
    SUBCASE("double weight") {
        OnnxBuilder m({2, 3, 3});
        auto* w = m.model().mutable_graph()->add_initializer();
        w->set_name("w");
        w->set_data_type(onnx::TensorProto::DOUBLE);
        for (int64_t d : {4, 2, 1, 1}) w->add_dims(d);
        for (int i = 0; i < 8; ++i) w->add_double_data(0.5);
        m.node("Conv", "conv", {"x", "w"}, {"y"});
        m.output("y");
        CHECK(error_of([&] { m.import(); }) ==
              "test.onnx: node 'conv' (Conv): its weight 'w' has element type DOUBLE; only "
              "float32 (FLOAT) values are supported: convert the model to float32");
    }
    SUBCASE("int8 input") {
        OnnxBuilder m = conv_model();
        m.model()
            .mutable_graph()
            ->mutable_input(0)
            ->mutable_type()
            ->mutable_tensor_type()
            ->set_elem_type(onnx::TensorProto::INT8);
        m.output("c");
        CHECK(contains(error_of([&] { m.import(); }), "has element type INT8; only float32"));
    }
    SUBCASE("external data whose file is absent") {
        TempDir dir;
        OnnxBuilder m({2, 3, 3});
        auto* w = m.model().mutable_graph()->add_initializer();
        w->set_name("w");
        w->set_data_type(onnx::TensorProto::FLOAT);
        for (int64_t d : {4, 2, 1, 1}) w->add_dims(d);
        w->set_data_location(onnx::TensorProto::EXTERNAL);
        auto* location = w->add_external_data();
        location->set_key("location");
        location->set_value("weights.bin");
        m.node("Conv", "conv", {"x", "w"}, {"y"});
        m.output("y");
        std::string path = dir.file("external.onnx");
        write_file(path, m.bytes());
        std::string message = error_of([&] { import_onnx(path); });
        CHECK(contains(message, "node 'conv' (Conv): its weight 'w' keeps its data in the external "
                                "file 'weights.bin', which cannot be opened"));
        CHECK(contains(message, "save_as_external_data=False"));
        // With the file next to the model, the weights load.
        Tensor expected = random({4, 2, 1, 1}, 8);
        write_file(dir.file("weights.bin"),
                   std::string(reinterpret_cast<const char*>(expected.data.data()), 32));
        CHECK(bit_identical(import_onnx(path).nodes[0].weight, expected));
    }
}

TEST_CASE("onnx: bad graph structure is reported") {
    SUBCASE("input that is not [N, C, H, W]") {
        OnnxBuilder m({12});
        m.node("Relu", "relu", {"x"}, {"y"});
        m.output("y");
        CHECK(contains(error_of([&] { m.import(); }),
                       "test.onnx: graph input 'x' must have shape [N, C, H, W]"));
    }
    SUBCASE("opset too new") {
        OnnxBuilder m = conv_model(19);
        m.output("c");
        CHECK(contains(error_of([&] { m.import(); }), "test.onnx: opset 19 is not supported"));
    }
    SUBCASE("shape mismatch found by infer_shapes") {
        OnnxBuilder m({3, 3, 3}); // conv weight expects 2 input channels
        m.initializer("w", random({4, 2, 1, 1}, 3));
        m.node("Conv", "conv", {"x", "w"}, {"y"});
        m.output("y");
        std::string message = error_of([&] { m.import(); });
        CHECK(contains(message, "test.onnx: "));
        CHECK(contains(message, "conv"));
    }
    SUBCASE("dangling input") {
        OnnxBuilder m = conv_model();
        m.node("Add", "add", {"c", "ghost"}, {"y"});
        m.output("y");
        CHECK(contains(error_of([&] { m.import(); }),
                       "node 'add' (Add): input 'ghost' is produced by no node"));
    }
    SUBCASE("training-mode BatchNormalization") {
        OnnxBuilder m = conv_model(15);
        for (const char* name : {"g", "b", "m", "v"}) m.initializer(name, Tensor({4}, 1.0f));
        auto& bn = m.node("BatchNormalization", "bn", {"c", "g", "b", "m", "v"}, {"y"});
        OnnxBuilder::integer(bn, "training_mode", 1);
        m.output("y");
        CHECK(contains(error_of([&] { m.import(); }), "training_mode=1 is not supported"));
    }
}

TEST_CASE("onnx: corrupted bytes of a real model give mps::Error or a graph, never a crash") {
    const std::string whole = read_file(data_dir + "pytorch_cnn.onnx");
    REQUIRE(!whole.empty());
    std::mt19937 rng(17);
    int errors = 0, graphs = 0;
    for (int trial = 0; trial < 300; ++trial) {
        std::string bytes = whole;
        int flips = 1 + static_cast<int>(rng() % 8);
        for (int f = 0; f < flips; ++f) bytes[rng() % bytes.size()] = static_cast<char>(rng());
        if (trial % 3 == 0) bytes.resize(rng() % bytes.size());
        try {
            Graph g = import_onnx_bytes(bytes, "fuzz.onnx");
            ++graphs;
        } catch (const Error& e) {
            ++errors;
            CHECK(contains(e.what(), "fuzz.onnx: "));
        }
    }
    CHECK(errors + graphs == 300);
    CHECK(errors > 0);
}
