// BitPolicy: uniform and per-layer construction, "W4A8" parsing, validation errors against a
// graph, compact strings, equality and hashing.
#include "evaluator/base/error.h"
#include "evaluator/ir/bit_policy.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <string>
#include <unordered_set>

using namespace mps;

namespace {

// conv (4 kernels) -> relu -> max_pool -> flatten -> fc (3 kernels)
Graph small_model() {
    test::GraphBuilder b({1, 8, 8});
    std::string x = b.relu(b.conv(b.input(), 4));
    x = b.flatten(b.max_pool(x));
    return b.finish(b.fully_connected(x, 3));
}

std::string error_of(const BitPolicy& p, const Graph& g) {
    try {
        p.validate(g);
    } catch (const Error& e) {
        return e.what();
    }
    return "";
}

} // namespace

TEST_CASE("bit_policy: uniform policy covers every quantizable layer and kernel") {
    const Graph g = small_model();
    const BitPolicy p = BitPolicy::uniform(g, 4, 8);
    REQUIRE(p.layers.size() == 2);
    CHECK(p.layers[0].name == "conv0");
    CHECK(p.layers[0].activation_bits == 8);
    CHECK(p.layers[0].weight_bits == std::vector<int>(4, 4));
    CHECK(p.layers[1].name == "fully_connected4");
    CHECK(p.layers[1].weight_bits == std::vector<int>(3, 4));
    CHECK_NOTHROW(p.validate(g));
    CHECK(p.to_string() == "W4A8");
    CHECK(BitPolicy::uniform(g, "w4a8") == p);
    CHECK(BitPolicy::uniform(g, "W32A32") == BitPolicy::uniform(g, 32, 32));
}

TEST_CASE("bit_policy: uniform_bits_name writes what parse_uniform_bits reads") {
    CHECK(uniform_bits_name({4, 8}) == "W4A8");
    for (int w : {0, 1, 2, 8, 16, 32})
        for (int a : {1, 3, 8, 16, 32}) {
            const UniformBits back = parse_uniform_bits(uniform_bits_name({w, a}));
            CHECK(back.weight_bits == w);
            CHECK(back.activation_bits == a);
        }
}

TEST_CASE("bit_policy: parse_uniform_bits accepts W<w>A<a> and rejects the rest") {
    CHECK(parse_uniform_bits("W4A8").weight_bits == 4);
    CHECK(parse_uniform_bits("W4A8").activation_bits == 8);
    CHECK(parse_uniform_bits("W0A16").weight_bits == 0);
    for (const char* bad : {"", "W4", "A8W4", "W4A8x", "W-1A8", "4A8", "W4 A8", "W1234A8"})
        CHECK_THROWS_WITH_AS(parse_uniform_bits(bad), doctest::Contains("W<bits>A<bits>"), Error);
    CHECK_THROWS_WITH_AS(parse_uniform_bits("W9A8"), doctest::Contains("weight bit-width 9"), Error);
    CHECK_THROWS_WITH_AS(parse_uniform_bits("W4A0"), doctest::Contains("activation bit-width 0"),
                         Error);
    CHECK_THROWS_WITH_AS(parse_uniform_bits("W4A17"), doctest::Contains("out of range"), Error);
}

TEST_CASE("bit_policy: per-layer policies and the compact string") {
    const Graph g = small_model();
    BitPolicy p = BitPolicy::per_layer(g, {{2, 8}, {8, 4}});
    CHECK(p.layers[0].weight_bits == std::vector<int>(4, 2));
    CHECK(p.layers[1].activation_bits == 4);
    CHECK(p.to_string() == "conv0:A8W2x4 fully_connected4:A4W8x3");
    p.find("conv0")->weight_bits = {4, 4, 0, 2};
    CHECK(p.to_string() == "conv0:A8W[4x2,0,2] fully_connected4:A4W8x3");
    CHECK_THROWS_WITH_AS(BitPolicy::per_layer(g, {{2, 8}}), doctest::Contains("2 quantizable"),
                         Error);
    CHECK_THROWS_WITH_AS(BitPolicy::per_layer(g, {{2, 8}, {3, 33}}),
                         doctest::Contains("fully_connected4"), Error);
}

TEST_CASE("bit_policy: validation names the layer and the problem") {
    const Graph g = small_model();
    const BitPolicy good = BitPolicy::uniform(g, 4, 8);

    BitPolicy p = good;
    p.layers[0].name = "conv_missing";
    CHECK(error_of(p, g).find("'conv_missing', which is not a node") != std::string::npos);

    p = good;
    p.layers[0].name = "relu1";
    CHECK(error_of(p, g).find("'relu1', which is a relu node") != std::string::npos);

    p = good;
    p.layers.pop_back();
    CHECK(error_of(p, g).find("no entry for layer 'fully_connected4'") != std::string::npos);

    p = good;
    p.layers.push_back(p.layers[0]);
    CHECK(error_of(p, g).find("'conv0' twice") != std::string::npos);

    p = good;
    std::swap(p.layers[0], p.layers[1]);
    CHECK(error_of(p, g).find("keep the model's layer order") != std::string::npos);

    p = good;
    p.layers[1].weight_bits.push_back(4);
    CHECK(error_of(p, g).find("gives 4 weight bit-widths but the layer has 3 kernels") !=
          std::string::npos);

    for (int bad : {-1, 9, 15, 17, 31, 33}) {
        p = good;
        p.layers[0].weight_bits[2] = bad;
        CHECK(error_of(p, g).find("kernel 2: weight bit-width " + std::to_string(bad)) !=
              std::string::npos);
    }
    for (int bad : {0, 9, 64}) {
        p = good;
        p.layers[1].activation_bits = bad;
        CHECK(error_of(p, g).find("activation bit-width " + std::to_string(bad)) !=
              std::string::npos);
    }
    for (int ok : {0, 1, 8, 16, 32}) {
        p = good;
        p.layers[0].weight_bits[0] = ok;
        CHECK(error_of(p, g).empty());
    }
}

TEST_CASE("bit_policy: equality and hash see every kernel") {
    const Graph g = small_model();
    const BitPolicy a = BitPolicy::uniform(g, 4, 8);
    BitPolicy b = a;
    CHECK(a == b);
    CHECK(a.hash() == b.hash());
    std::unordered_set<BitPolicy> seen{a};
    for (int layer = 0; layer < 2; ++layer)
        for (size_t k = 0; k < b.layers[static_cast<size_t>(layer)].weight_bits.size(); ++k) {
            BitPolicy c = a;
            c.layers[static_cast<size_t>(layer)].weight_bits[k] = 3;
            CHECK_FALSE(c == a);
            CHECK(seen.insert(c).second); // distinct hashes or at least distinct keys
            CHECK(c.hash() != a.hash());
        }
    b.layers[1].activation_bits = 4;
    CHECK_FALSE(a == b);
    CHECK(a.hash() != b.hash());
    CHECK(seen.count(a) == 1);
}
