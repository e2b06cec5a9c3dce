// The naive reference ops against tiny cases computed by hand, so that the ground truth the
// engines are tested against is itself checked.
#include "evaluator/ref/reference.h"

#include "evaluator/base/error.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <vector>

using namespace mps;

namespace {

// A 1x1x4x4 image holding 0, 1, ..., 15 row by row.
Tensor ramp4x4() {
    Tensor t({1, 1, 4, 4});
    for (int i = 0; i < 16; ++i) t.data[i] = static_cast<float>(i);
    return t;
}

Node conv_node(std::vector<int64_t> weight_dims, std::vector<float> weights) {
    Node n;
    n.name = std::string("conv");
    n.op = Op::conv;
    n.kernel = {weight_dims[2], weight_dims[3]};
    n.weight = Tensor(weight_dims);
    n.weight.data = std::move(weights);
    return n;
}

Node pool_node(Op op, Dims2 kernel, Dims2 stride, Dims2 pad) {
    Node n;
    n.name = "p";
    n.op = op;
    n.kernel = kernel;
    n.stride = stride;
    n.pad_begin = n.pad_end = pad;
    return n;
}

void check_values(const Tensor& got, std::vector<int64_t> dims, std::vector<float> want) {
    REQUIRE(got.dims == dims);
    REQUIRE(got.data.size() == want.size());
    for (size_t i = 0; i < want.size(); ++i) CHECK(got.data[i] == doctest::Approx(want[i]));
}

} // namespace

TEST_CASE("reference conv: 3x3 kernels on a 4x4 image by hand") {
    const Tensor x = ramp4x4();
    SUBCASE("all-ones kernel with bias, no padding") {
        Node n = conv_node({1, 1, 3, 3}, std::vector<float>(9, 1.0f));
        n.bias = Tensor({1}, 0.5f);
        check_values(reference_conv(x, n), {1, 1, 2, 2}, {45.5f, 54.5f, 81.5f, 90.5f});
    }
    SUBCASE("padding 1, stride 2: padded positions read as zero") {
        Node n = conv_node({1, 1, 3, 3}, std::vector<float>(9, 1.0f));
        n.stride = {2, 2};
        n.pad_begin = n.pad_end = {1, 1};
        check_values(reference_conv(x, n), {1, 1, 2, 2}, {10, 24, 51, 90});
    }
    SUBCASE("sparse kernel: out(y, x) = 2 * in(y, x) + in(y + 1, x + 1)") {
        Node n = conv_node({1, 1, 3, 3}, {2, 0, 0, 0, 1, 0, 0, 0, 0});
        check_values(reference_conv(x, n), {1, 1, 2, 2}, {5, 8, 17, 20});
    }
    SUBCASE("dilation 2 with a 2x2 kernel samples the corners of a 3x3 window") {
        Node n = conv_node({1, 1, 2, 2}, {1, 1, 1, 1});
        n.dilation = {2, 2};
        check_values(reference_conv(x, n), {1, 1, 2, 2}, {20, 24, 36, 40});
    }
    SUBCASE("asymmetric padding: one column on the left only") {
        Node n = conv_node({1, 1, 1, 2}, {1, 10});
        n.pad_begin = {0, 1};
        // out(y, x) = in(y, x - 1) + 10 * in(y, x), x = 0..3
        Tensor got = reference_conv(x, n);
        REQUIRE(got.dims == std::vector<int64_t>{1, 1, 4, 4});
        CHECK(got.data[0] == 0.0f);
        CHECK(got.data[1] == 0 + 10 * 1);
        CHECK(got.data[7] == 6 + 10 * 7);
    }
}

TEST_CASE("reference conv: groups keep channels apart") {
    Tensor x({1, 2, 1, 2});
    x.data = {1, 2, 3, 4}; // channel 0: 1 2, channel 1: 3 4
    Node n = conv_node({2, 1, 1, 1}, {2, -3});
    n.groups = 2;
    check_values(reference_conv(x, n), {1, 2, 1, 2}, {2, 4, -9, -12});
    // A dense conv over both channels mixes them.
    Node dense = conv_node({1, 2, 1, 1}, {1, 10});
    check_values(reference_conv(x, dense), {1, 1, 1, 2}, {31, 42});
}

TEST_CASE("reference fully connected and batch norm and relu and clip by hand") {
    Tensor x({1, 3});
    x.data = {1, 2, 3};
    Node fc;
    fc.name = "fc";
    fc.op = Op::fully_connected;
    fc.weight = Tensor({2, 3});
    fc.weight.data = {1, 0, -1, 2, 1, 0};
    fc.bias = Tensor({2});
    fc.bias.data = {0.5f, -1.0f};
    check_values(reference_fully_connected(x, fc), {1, 2}, {-1.5f, 3.0f});

    Tensor y({1, 1, 1, 2});
    y.data = {3, -1};
    Node bn;
    bn.name = "bn";
    bn.op = Op::batch_norm;
    bn.weight = Tensor({1}, 2.0f);
    bn.bias = Tensor({1}, 1.0f);
    bn.mean = Tensor({1}, 1.0f);
    bn.var = Tensor({1}, 4.0f);
    bn.epsilon = 0.0f;
    check_values(reference_batch_norm(y, bn), {1, 1, 1, 2}, {3.0f, -1.0f}); // (x-1)/2*2+1

    Tensor z({4});
    z.data = {-2, 0.5f, 3, 7};
    check_values(reference_relu(z), {4}, {0, 0.5f, 3, 7});
    Node clip;
    clip.op = Op::clip;
    clip.clip_min = -1.0f;
    clip.clip_max = 6.0f;
    check_values(reference_clip(z, clip), {4}, {-1, 0.5f, 3, 6});
}

TEST_CASE("reference pooling by hand") {
    const Tensor x = ramp4x4();
    check_values(reference_max_pool(x, pool_node(Op::max_pool, {2, 2}, {2, 2}, {0, 0})),
                 {1, 1, 2, 2}, {5, 7, 13, 15});
    SUBCASE("max pool ignores padding (all values negative)") {
        Tensor neg = x;
        for (float& v : neg.data) v = -v - 1; // -1 .. -16
        check_values(reference_max_pool(neg, pool_node(Op::max_pool, {3, 3}, {2, 2}, {1, 1})),
                     {1, 1, 2, 2}, {-1, -2, -5, -6});
    }
    SUBCASE("average pool with and without counting the padding") {
        Node avg = pool_node(Op::average_pool, {3, 3}, {2, 2}, {1, 1});
        avg.count_include_pad = false;
        check_values(reference_average_pool(x, avg), {1, 1, 2, 2},
                     {10.0f / 4, 24.0f / 6, 51.0f / 6, 10.0f});
        avg.count_include_pad = true;
        check_values(reference_average_pool(x, avg), {1, 1, 2, 2},
                     {10.0f / 9, 24.0f / 9, 51.0f / 9, 10.0f});
    }
    check_values(reference_global_average_pool(x), {1, 1, 1, 1}, {7.5f});
}

TEST_CASE("reference add and flatten") {
    Tensor a({1, 2, 1, 1}), b({1, 2, 1, 1});
    a.data = {1, 2};
    b.data = {10, -5};
    check_values(reference_add(a, b), {1, 2, 1, 1}, {11, -3});
    CHECK_THROWS_AS(reference_add(a, Tensor({1, 1, 1, 2})), Error);
    const Tensor f = reference_flatten(Tensor({3, 2, 2, 2}, 1.0f));
    CHECK(f.dims == std::vector<int64_t>{3, 8});
}

TEST_CASE("reference forward: conv relu flatten fc by hand") {
    test::GraphBuilder b({1, 2, 2});
    std::string x = b.conv(b.input(), 1, {{1, 1}, {1, 1}, {0, 0}, {0, 0}, {1, 1}, 1, true});
    x = b.fully_connected(b.flatten(b.relu(x)), 2, false);
    Graph g = b.finish(x);
    g.nodes[0].weight.data = {2};
    g.nodes[0].bias.data = {1};
    g.nodes[3].weight.data = {1, 1, 1, 1, 1, 0, 0, 0};
    Tensor input({2, 1, 2, 2});
    input.data = {1, -2, 3, -4, /* second image */ 0, 0, 0, 0};
    // conv: 2x + 1 -> {3, -3, 7, -7} and {1, 1, 1, 1}; relu; fc rows: sum, first.
    check_values(reference_forward(g, input), {2, 2}, {10, 3, 4, 1});
    CHECK_THROWS_AS(reference_forward(g, Tensor({2, 1, 3, 3})), Error);
}
