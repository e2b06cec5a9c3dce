// Costs against hand counts for a two-layer model (conv + fully connected) with pruned kernels
// and mixed bit-widths, and the peak activation memory schedule.
#include "evaluator/base/error.h"
#include "evaluator/ir/costs.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

using namespace mps;

namespace {

// input 1x6x6 -> conv0 (4 kernels 3x3, no padding: 4x4x4 out) -> relu1 -> flatten2 (64)
// -> fully_connected3 (3 kernels of 64)
Graph two_layer_model() {
    test::GraphBuilder b({1, 6, 6});
    test::ConvSpec spec;
    spec.pad_begin = spec.pad_end = {0, 0};
    const std::string x = b.flatten(b.relu(b.conv(b.input(), 4, spec)));
    return b.finish(b.fully_connected(x, 3));
}

// Pruned kernels, a float kernel, a 1-bit kernel and different activation bits per layer.
BitPolicy mixed_policy(const Graph& g) {
    BitPolicy p = BitPolicy::uniform(g, 32, 32);
    p.layers[0].activation_bits = 8;
    p.layers[0].weight_bits = {4, 0, 2, 8};
    p.layers[1].activation_bits = 4;
    p.layers[1].weight_bits = {32, 1, 0};
    return p;
}

} // namespace

TEST_CASE("costs: hand counts for a two-layer model with pruned kernels and mixed bits") {
    const Graph g = two_layer_model();
    const BitPolicy p = mixed_policy(g);
    const Costs c = compute_costs(g, p);

    // MACs: conv kernel = 9 weights x 16 positions = 144, layer 576; fc kernel 64, layer 192.
    REQUIRE(c.layers.size() == 2);
    CHECK(c.layers[0].kernel_macs == 144);
    CHECK(c.layers[0].macs == 576);
    CHECK(c.layers[1].kernel_macs == 64);
    CHECK(c.layers[1].macs == 192);
    CHECK(c.macs == 768);
    CHECK(c.macs == graph_macs(g));
    CHECK(kernel_macs(g, g.nodes[0]) == 144);

    // BitOPs: 144 * 8 * (4 + 0 + 2 + 8) + 64 * 4 * (32 + 1 + 0) = 16128 + 8448.
    CHECK(c.layers[0].bitops == 16128);
    CHECK(c.layers[1].bitops == 8448);
    CHECK(c.bitops == 24576);
    CHECK(c.fp32_bitops == 768 * 1024);
    CHECK(c.relative_bitops() == doctest::Approx(24576.0 / 786432.0));

    // Weight bits: conv (9*4 + 32) + 0 + (9*2 + 32) + (9*8 + 32) + 4 biases * 32 = 350;
    // fc 64*32 (float: no scale) + (64*1 + 32) + 0 + 3 biases * 32 = 2240.
    CHECK(c.layers[0].weight_bits == 350);
    CHECK(c.layers[1].weight_bits == 2240);
    CHECK(c.weight_bits == 2590);
    CHECK(c.fp32_weight_bits == (36 + 4 + 192 + 3) * 32);
    CHECK(c.weight_bytes() == 2590.0 / 8);
    CHECK(c.relative_weight_bytes() == doctest::Approx(2590.0 / 7520.0));

    // FLOPs of the pruned network: 2 * (3 * 144 + 2 * 64).
    CHECK(c.flops == 1120);
    CHECK(c.fp32_flops == 1536);

    // Peak activation memory. Storage: input 36 values at 8 bits (read by conv0 at A8), conv and
    // relu outputs 64 at 32 bits, flatten output 64 at 4 bits (read by the fc at A4), logits 3 at
    // 32. Steps: conv 288 + 2048; relu 2048 + 2048; flatten 2048 + 256; fc 256 + 96.
    CHECK(c.peak_activation_bits == 4096);
    CHECK(c.fp32_peak_activation_bits == 4096);
}

TEST_CASE("costs: kernel_costs summed over a layer's kernels plus its biases is the layer's cost") {
    const Graph g = two_layer_model();
    const KernelShape conv = kernel_shape(g, g.nodes[0]);
    CHECK(conv.macs == 144);
    CHECK(conv.weights == 9);
    // The hand counts above, kernel by kernel: pruned no scale, 1..16 bits a scale, 32 none.
    CHECK(kernel_costs(conv, 4, 8).bitops == 144 * 4 * 8);
    CHECK(kernel_costs(conv, 4, 8).weight_bits == 9 * 4 + 32);
    CHECK(kernel_costs(conv, 4, 8).unpruned_macs == 144);
    CHECK(kernel_costs(conv, 0, 8).bitops == 0);
    CHECK(kernel_costs(conv, 0, 8).weight_bits == 0);
    CHECK(kernel_costs(conv, 0, 8).unpruned_macs == 0);
    CHECK(kernel_costs(conv, 16, 8).weight_bits == 9 * 16 + 32);
    CHECK(kernel_costs(conv, 32, 8).weight_bits == 9 * 32);

    const BitPolicy p = mixed_policy(g);
    const Costs c = compute_costs(g, p);
    for (size_t l = 0; l < p.layers.size(); ++l) {
        const Node& node = *g.find_node(p.layers[l].name);
        const KernelShape shape = kernel_shape(g, node);
        KernelCosts sum;
        for (int b : p.layers[l].weight_bits) {
            const KernelCosts k = kernel_costs(shape, b, p.layers[l].activation_bits);
            sum.bitops += k.bitops;
            sum.weight_bits += k.weight_bits;
            sum.unpruned_macs += k.unpruned_macs;
        }
        CHECK(sum.bitops == c.layers[l].bitops);
        CHECK(sum.weight_bits + bias_bits(node) == c.layers[l].weight_bits);
        CHECK(sum.unpruned_macs == c.layers[l].unpruned_macs);
    }
}

TEST_CASE("costs: W32A32 is the FP32 reference and relative figures are 1") {
    const Graph g = two_layer_model();
    const Costs c = compute_costs(g, BitPolicy::uniform(g, 32, 32));
    CHECK(c.bitops == c.fp32_bitops);
    CHECK(c.weight_bits == c.fp32_weight_bits);
    CHECK(c.relative_bitops() == 1.0);
    CHECK(c.relative_weight_bytes() == 1.0);
    CHECK(c.relative_flops() == 1.0);
    CHECK(c.relative_peak_activation() == 1.0);
    const Costs w4a4 = compute_costs(g, BitPolicy::uniform(g, 4, 4));
    CHECK(w4a4.relative_bitops() == doctest::Approx(16.0 / 1024.0));
    // Weights: (36 + 192) * 4 + 7 scales * 32 + 7 biases * 32.
    CHECK(w4a4.weight_bits == 228 * 4 + 7 * 32 + 7 * 32);
    const Costs pruned = compute_costs(g, BitPolicy::uniform(g, 0, 8));
    CHECK(pruned.bitops == 0);
    CHECK(pruned.flops == 0);
    CHECK(pruned.weight_bits == 7 * 32); // only the biases stay
}

TEST_CASE("costs: peak activation memory follows liveness and the widest reader") {
    // input 1x4x4 -> conv0 (2 kernels, same padding: 2x4x4) -> relu1 -> conv2 (2x4x4)
    // -> add3(relu1, conv2) -> flatten4 (32) -> fc5 (2)
    test::GraphBuilder b({1, 4, 4});
    const std::string r = b.relu(b.conv(b.input(), 2));
    const std::string sum = b.add(r, b.conv(r, 2));
    const Graph g = b.finish(b.fully_connected(b.flatten(sum), 2));
    BitPolicy p = BitPolicy::uniform(g, 4, 4);
    p.layers[0].activation_bits = 2; // input: 16 values at 2 bits
    // relu1 is read by conv2 (A4) and by the add (32): stored at 32.
    // Steps: conv0: in 32 + c0 1024; relu1: c0 1024 + r 1024; conv2: r 1024 + c2 1024;
    // add3: r + c2 + sum = 3072; flatten4: sum 1024 + flat 32*4 = 128; fc5: 128 + 64.
    CHECK(compute_costs(g, p).peak_activation_bits == 3072);
    // Explicit storage bits: relu1 at 8, everything else 32. Steps: conv0 512 + 1024; relu1
    // 1024 + 256; conv2 256 + 1024; add3 256 + 1024 + 1024 = 2304; flatten4 1024 + 1024; fc5 1088.
    CHECK(peak_activation_bits(g, {{r, 8}}) == 2304);
    CHECK(peak_activation_bits(g, {}) == 3072);
}

TEST_CASE("costs: compute_costs validates the policy") {
    const Graph g = two_layer_model();
    BitPolicy p = BitPolicy::uniform(g, 4, 4);
    p.layers[1].weight_bits.pop_back();
    CHECK_THROWS_WITH_AS(compute_costs(g, p), doctest::Contains("has 3 kernels"), Error);
}

TEST_CASE("costs: a graph without shapes is an error, not a crash") {
    Graph g = two_layer_model();
    const BitPolicy p = BitPolicy::uniform(g, 4, 4);
    g.shapes.clear();
    CHECK_THROWS_WITH_AS(compute_costs(g, p), doctest::Contains("run infer_shapes()"), Error);
}
