// The integer path's ISA rules (int8_isa.h): the code bounds against their definitions, and the
// worst case for oneDNN's non-VNNI int8 kernels, every code at its largest magnitude, exact on
// whatever ISA the test runs under (ctest runs it again with DNNL_MAX_CPU_ISA=AVX2 and
// AVX512_CORE, where an s8 source has its weights halved and pair sums saturate at int16).
#include "evaluator/engine/int8_isa.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ref/quantized_reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <string>

using namespace mps;

TEST_CASE("int8 code bounds follow the activation and weight quantizers' definitions") {
    for (int bits = 1; bits <= 8; ++bits) {
        CAPTURE(bits);
        CHECK(largest_source_code(bits, false, false) == activation_qmax(bits, false));
        if (bits == 1) {
            CHECK(signed_activation_zero_point(1) == 1);
            CHECK(largest_source_code(1, true, false) == 1);
            CHECK(largest_source_code(1, true, true) == 2); // codes -1, +1 shifted to 0, 2
            CHECK(largest_weight_code(1) == 1);
            continue;
        }
        const int qmax = activation_qmax(bits, true);
        CHECK(signed_activation_zero_point(bits) == qmax + 1);
        CHECK(largest_source_code(bits, true, false) == qmax);
        CHECK(largest_source_code(bits, true, true) == 2 * qmax + 1); // -qmax..qmax + (qmax + 1)
        CHECK(largest_weight_code(bits) == uniform_qmax(bits));
    }
    CHECK(largest_weight_code(0) == 0);
    CHECK_THROWS_AS(largest_source_code(9, false, false), Error);
    CHECK_THROWS_AS(largest_weight_code(9), Error);
    // The 16-bit pair sum: 2 * 255 * 63 and 2 * 127 * 127 fit, 2 * 255 * 127 does not.
    CHECK(pair_sums_fit_int16(255, 63));
    CHECK(pair_sums_fit_int16(127, 127));
    CHECK_FALSE(pair_sums_fit_int16(255, 127));
    CHECK_FALSE(pair_sums_fit_int16(130, 127)); // 2 * 130 * 127 = 33020
    CHECK(pair_sums_fit_int16(129, 127));        // 32766
}

TEST_CASE("the ISA the integer path reports is oneDNN's") {
    const Int8Isa isa = int8_isa();
    CHECK(isa.name == effective_isa_name());
    CHECK(isa.exact_pair_sums == isa.exact_s8_source);
    const bool vnni512 = isa.name.rfind("avx512_core_", 0) == 0;
    CHECK(isa.exact_s8_source == vnni512);
}

namespace {

// relu -> conv (unsigned input) -> conv (signed input) -> fc (signed input) -> relu -> fc
// (unsigned input), every weight 1 and every bias 0: with inputs far above the calibrated ranges
// every code is at its largest magnitude and all products of a pair have the same sign, the
// worst case for int16 pair sums.
Graph all_ones_graph() {
    test::GraphBuilder b({16, 6, 6}, 3);
    std::string x = b.conv(b.relu(b.input()), 16);
    x = b.conv(x, 16);
    x = b.relu(b.fully_connected(b.flatten(x), 32));
    Graph g = b.finish(b.fully_connected(x, 10));
    for (Node& node : g.nodes) {
        std::fill(node.weight.data.begin(), node.weight.data.end(), 1.0f);
        std::fill(node.bias.data.begin(), node.bias.data.end(), 0.0f);
    }
    fold_batch_norm(g);
    return g;
}

} // namespace

TEST_CASE("integer path is exact with every code at its largest magnitude") {
    const Graph graph = all_ones_graph();
    const auto calibration = std::make_shared<const Calibration>(
        calibrate(graph, test::random_images(graph.input_shape, 16, 5), CalibrationMethod{}));
    auto cache = std::make_shared<WeightCache>(graph, make_weight_quantizer("uniform"));
    const Dataset images = test::random_images(graph.input_shape, 4, 6, 50.0f, 60.0f);
    Tensor input({images.count, images.channels, images.height, images.width});
    input.data = images.images;
    QuantizedNetwork integer(graph, calibration, cache, ExecutionPath::integer, 4);
    const Int8Isa isa = int8_isa();
    // The largest bit-widths whose pair sums fit int16, and W8A8, which fits only with VNNI.
    for (const auto& [w, a] : {std::pair{7, 8}, std::pair{8, 7}, std::pair{8, 8}, std::pair{2, 1}}) {
        CAPTURE(w);
        CAPTURE(a);
        const BitPolicy policy = BitPolicy::uniform(graph, w, a);
        integer.set_policy(policy);
        const bool integer_expected = isa.exact_pair_sums || w < 8 || a < 8;
        for (const std::string& line : integer.path_decisions()) {
            CAPTURE(line);
            CHECK((line.find("integer path") != std::string::npos) == integer_expected);
            if (!integer_expected) CHECK(line.find("could saturate") != std::string::npos);
        }
        const Tensor want =
            reference_quantized_forward(graph, input, policy, cache->quantizer(), *calibration);
        CHECK(test::relative_max_diff(integer.run(input.data.data(), 4), want) < 1e-4);
    }
}
