// WeightCache: hits, misses, LRU eviction by bytes, equality with direct quantization, threads.
#include "evaluator/engine/quantized_network.h"

#include "evaluator/base/error.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <atomic>
#include <thread>

using namespace mps;

namespace {

Graph two_layers() {
    test::GraphBuilder b({3, 6, 6}, 2);
    const std::string x = b.flatten(b.relu(b.conv(b.input(), 8)));
    return b.finish(b.fully_connected(x, 5));
}

std::shared_ptr<const WeightQuantizer> uniform() { return make_weight_quantizer("uniform"); }

} // namespace

TEST_CASE("weight cache returns exactly what quantize_weights computes, and counts hits") {
    const Graph graph = two_layers();
    WeightCache cache(graph, uniform());
    const Node& conv = graph.nodes[0];
    const std::vector<int> bits{4, 4, 2, 8, 0, 32, 1, 16};
    const auto first = cache.get(conv.name, bits);
    const Tensor direct = quantize_weights(cache.quantizer(), conv.weight, bits);
    CHECK(first->dims == direct.dims);
    CHECK(first->data == direct.data);
    CHECK(cache.misses() == 1);
    CHECK(cache.hits() == 0);
    const auto second = cache.get(conv.name, bits);
    CHECK(second.get() == first.get()); // the same tensor, not a recomputation
    CHECK(cache.hits() == 1);
    std::vector<int> other = bits;
    other[0] = 3;
    CHECK(cache.get(conv.name, other)->data ==
          quantize_weights(cache.quantizer(), conv.weight, other).data);
    CHECK(cache.misses() == 2);
    CHECK(cache.entries() == 2);
    CHECK(cache.bytes() == 2 * conv.weight.numel() * 4);
}

TEST_CASE("weight cache evicts the least recently used entries beyond its byte budget") {
    const Graph graph = two_layers();
    const Node& conv = graph.nodes[0];
    const int64_t one = conv.weight.numel() * 4;
    WeightCache cache(graph, uniform(), 2 * one); // room for two conv entries
    const std::vector<int> a(8, 2), b(8, 3), c(8, 4);
    const auto held = cache.get(conv.name, a);
    cache.get(conv.name, b);
    cache.get(conv.name, a); // a is now more recent than b
    cache.get(conv.name, c); // evicts b
    CHECK(cache.entries() == 2);
    CHECK(cache.bytes() == 2 * one);
    const int64_t misses = cache.misses();
    cache.get(conv.name, a);
    CHECK(cache.misses() == misses); // still there
    cache.get(conv.name, b);
    CHECK(cache.misses() == misses + 1); // was evicted
    // a handed-out tensor outlives its eviction
    cache.get(conv.name, c);
    cache.get(conv.name, std::vector<int>(8, 5));
    CHECK(held->data == quantize_weights(cache.quantizer(), conv.weight, a).data);
}

TEST_CASE("weight cache rejects unknown layers and wrong kernel counts") {
    const Graph graph = two_layers();
    WeightCache cache(graph, uniform());
    CHECK_THROWS_WITH_AS(cache.get("relu1", std::vector<int>(8, 4)),
                         doctest::Contains("'relu1' is not a conv or fully connected layer"), Error);
    CHECK_THROWS_AS(cache.get(graph.nodes[0].name, std::vector<int>(3, 4)), Error);
}

TEST_CASE("weight cache serves many threads the same tensors") {
    const Graph graph = two_layers();
    WeightCache cache(graph, make_weight_quantizer("kmeans"), 3 * graph.nodes[0].weight.numel() * 4);
    const Node& conv = graph.nodes[0];
    std::vector<std::thread> threads;
    std::atomic<int> wrong{0};
    for (int t = 0; t < 4; ++t)
        threads.emplace_back([&, t] {
            for (int i = 0; i < 40; ++i) {
                const std::vector<int> bits(8, 1 + (i + t) % 6);
                const auto w = cache.get(conv.name, bits);
                if (w->data != quantize_weights(cache.quantizer(), conv.weight, bits).data) ++wrong;
            }
        });
    for (auto& t : threads) t.join();
    CHECK(wrong == 0);
    CHECK(cache.hits() + cache.misses() == 160);
    CHECK(cache.entries() <= 3);
}
