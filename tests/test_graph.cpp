// Graph IR: shape inference and its errors, BN folding against conv-then-BN, MAC counts by hand.
#include "evaluator/base/error.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ref/reference.h"

#include <doctest/doctest.h>

#include <cmath>
#include <random>
#include <string>

using namespace mps;

namespace {

Tensor random_tensor(std::vector<int64_t> dims, std::mt19937& rng, float lo = -1, float hi = 1) {
    Tensor t(std::move(dims));
    std::uniform_real_distribution<float> u(lo, hi);
    for (float& x : t.data) x = u(rng);
    return t;
}

Node conv_node(const std::string& name, const std::string& in, const std::string& out,
               int64_t cin, int64_t cout, int64_t k, std::mt19937& rng, int64_t groups = 1) {
    Node n;
    n.name = name;
    n.op = Op::conv;
    n.inputs = {in};
    n.output = out;
    n.kernel = {k, k};
    n.pad_begin = n.pad_end = {k / 2, k / 2};
    n.groups = groups;
    n.weight = random_tensor({cout, cin / groups, k, k}, rng);
    n.bias = random_tensor({cout}, rng);
    return n;
}

Node bn_node(const std::string& name, const std::string& in, const std::string& out, int64_t c,
             std::mt19937& rng) {
    Node n;
    n.name = name;
    n.op = Op::batch_norm;
    n.inputs = {in};
    n.output = out;
    n.weight = random_tensor({c}, rng, 0.5f, 2.0f);
    n.bias = random_tensor({c}, rng);
    n.mean = random_tensor({c}, rng);
    n.var = random_tensor({c}, rng, 0.1f, 3.0f);
    n.epsilon = 1e-3f;
    return n;
}

Node simple_node(const std::string& name, Op op, std::vector<std::string> in, const std::string& out) {
    Node n;
    n.name = name;
    n.op = op;
    n.inputs = std::move(in);
    n.output = out;
    return n;
}

std::string error_of(Graph& g) {
    try {
        infer_shapes(g);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

// conv(1->4, 3x3, pad 1) on 1x6x6 -> relu -> maxpool 2 -> flatten -> fc(36->3)
Graph two_layer_model(std::mt19937& rng) {
    Graph g;
    g.input = "x";
    g.input_shape = {1, 6, 6};
    g.output = "y";
    g.nodes.push_back(conv_node("conv", "x", "c", 1, 4, 3, rng));
    g.nodes.push_back(simple_node("relu", Op::relu, {"c"}, "r"));
    Node pool = simple_node("pool", Op::max_pool, {"r"}, "p");
    pool.kernel = pool.stride = {2, 2};
    g.nodes.push_back(pool);
    g.nodes.push_back(simple_node("flat", Op::flatten, {"p"}, "f"));
    Node fc = simple_node("fc", Op::fully_connected, {"f"}, "y");
    fc.weight = random_tensor({3, 36}, rng);
    fc.bias = random_tensor({3}, rng);
    g.nodes.push_back(fc);
    return g;
}

} // namespace

TEST_CASE("infer_shapes computes every value's shape and the MACs by hand count") {
    std::mt19937 rng(1);
    Graph g = two_layer_model(rng);
    infer_shapes(g);
    CHECK(g.shapes.at("c") == std::vector<int64_t>{4, 6, 6});
    CHECK(g.shapes.at("p") == std::vector<int64_t>{4, 3, 3});
    CHECK(g.shapes.at("f") == std::vector<int64_t>{36});
    CHECK(g.shapes.at("y") == std::vector<int64_t>{3});
    // conv: 4 kernels x 9 weights x 36 positions; fc: 3 x 36.
    CHECK(node_macs(g, g.nodes[0]) == 4 * 9 * 36);
    CHECK(node_macs(g, g.nodes[4]) == 3 * 36);
    CHECK(graph_macs(g) == 4 * 9 * 36 + 3 * 36);
    CHECK(graph_params(g) == 4 * 9 + 4 + 3 * 36 + 3);
}

TEST_CASE("infer_shapes names the node and the mismatch") {
    std::mt19937 rng(2);
    Graph g = two_layer_model(rng);
    g.input_shape = {3, 6, 6};
    CHECK(error_of(g).find("node 'conv'") != std::string::npos);

    g = two_layer_model(rng);
    g.nodes[4].weight = random_tensor({3, 35}, rng);
    CHECK(error_of(g).find("node 'fc'") != std::string::npos);

    g = two_layer_model(rng);
    g.nodes[1].inputs = {"nowhere"};
    CHECK(error_of(g).find("'nowhere'") != std::string::npos);

    g = two_layer_model(rng);
    g.nodes.push_back(simple_node("sum", Op::add, {"c", "p"}, "s"));
    CHECK(error_of(g).find("same shape") != std::string::npos);

    g = two_layer_model(rng);
    g.nodes[0].groups = 3;
    CHECK(error_of(g).find("groups=3") != std::string::npos);
}

TEST_CASE("fold_batch_norm equals conv followed by batch_norm") {
    std::mt19937 rng(3);
    for (int64_t groups : {1, 4}) {
        Graph g;
        g.input = "x";
        g.input_shape = {4, 5, 5};
        g.output = "b";
        g.nodes.push_back(conv_node("conv", "x", "c", 4, 8, 3, rng, groups));
        if (groups == 4) g.nodes[0].bias = Tensor(); // fold must create the bias
        g.nodes.push_back(bn_node("bn", "c", "b", 8, rng));
        infer_shapes(g);
        const Tensor x = random_tensor({2, 4, 5, 5}, rng);
        const Tensor expected = reference_batch_norm(reference_conv(x, g.nodes[0]), g.nodes[1]);
        fold_batch_norm(g);
        REQUIRE(g.nodes.size() == 1);
        CHECK(g.nodes[0].name == "conv");
        CHECK(g.nodes[0].output == "b");
        const Tensor got = reference_conv(x, g.nodes[0]);
        REQUIRE(got.dims == expected.dims);
        for (size_t i = 0; i < got.data.size(); ++i)
            CHECK(got.data[i] == doctest::Approx(expected.data[i]).epsilon(1e-5));
    }
}

TEST_CASE("fold_batch_norm keeps a batch_norm that does not follow a conv as a channel_affine") {
    std::mt19937 rng(4);
    Graph g;
    g.input = "x";
    g.input_shape = {2, 3, 3};
    g.output = "b";
    g.nodes.push_back(simple_node("relu", Op::relu, {"x"}, "r"));
    g.nodes.push_back(bn_node("bn", "r", "b", 2, rng));
    infer_shapes(g);
    const Tensor x = random_tensor({2, 2, 3, 3}, rng);
    const Tensor want = reference_batch_norm(reference_relu(x), g.nodes[1]);
    fold_batch_norm(g);
    REQUIRE(g.nodes.size() == 2);
    CHECK(g.nodes[1].name == "bn");
    CHECK(g.nodes[1].op == Op::channel_affine);
    const Tensor got = reference_channel_affine(reference_relu(x), g.nodes[1]);
    for (size_t i = 0; i < got.data.size(); ++i)
        CHECK(got.data[i] == doctest::Approx(want.data[i]).epsilon(1e-6));
}
