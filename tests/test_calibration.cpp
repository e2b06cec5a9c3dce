// Calibration against a naive computation: the max (and mean magnitude, count) of every
// quantizable layer's input over the calibration images, computed with the reference ops.
#include "evaluator/engine/quantized_network.h"

#include "evaluator/base/error.h"
#include "evaluator/ref/reference.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>

using namespace mps;

namespace {

Dataset random_images(const Graph& graph, int64_t n, uint64_t seed) {
    return test::random_images(graph.input_shape, n, seed);
}

// Every value of `graph` on `data`, by the reference ops (double accumulation).
std::map<std::string, Tensor> reference_values(const Graph& graph, const Dataset& data) {
    std::map<std::string, Tensor> values;
    Tensor input({data.count, data.channels, data.height, data.width});
    input.data = data.images;
    values[graph.input] = input;
    for (const Node& node : graph.nodes) {
        std::vector<const Tensor*> inputs;
        for (const std::string& v : node.inputs) inputs.push_back(&values.at(v));
        values[node.output] = reference_node(node, inputs);
    }
    return values;
}

// A small graph with a signed input layer, a residual add, a value read by two quantizable
// layers (the block input: conv and projection) and a fully connected head.
Graph tiny_residual() {
    test::GraphBuilder b({2, 8, 8}, 5);
    const std::string stem = b.relu(b.conv(b.input(), 4));
    const std::string branch = b.conv(b.relu(b.conv(stem, 4)), 4);
    test::ConvSpec one_by_one;
    one_by_one.kernel = {1, 1};
    one_by_one.pad_begin = one_by_one.pad_end = {0, 0};
    const std::string sum = b.relu(b.add(branch, b.conv(stem, 4, one_by_one)));
    const std::string pooled = b.flatten(b.max_pool(sum));
    return b.finish(b.fully_connected(b.clip(b.fully_connected(pooled, 6), -1.0f, 1.0f), 3));
}

} // namespace

TEST_CASE("calibration observes each quantizable layer input as a naive max over the images") {
    const Graph graph = tiny_residual();
    const Dataset data = random_images(graph, 37, 9);
    // batch 16: two full batches and a partial one, so batching must not change the statistics
    const Calibration calibration = calibrate(graph, data, CalibrationMethod{}, 16);
    const auto values = reference_values(graph, data);
    const auto is_unsigned = unsigned_values(graph);

    std::set<std::string> inputs;
    for (const Node* layer : quantizable_layers(graph)) inputs.insert(layer->inputs[0]);
    CHECK(calibration.observers.size() == inputs.size());
    CHECK(inputs.size() == 5); // the stem output feeds two convs: observed once

    for (const std::string& value : inputs) {
        CAPTURE(value);
        REQUIRE(calibration.observers.count(value));
        const ActivationObserver& observer = calibration.observers.at(value);
        const Tensor& x = values.at(value);
        const bool is_signed = !is_unsigned.at(value);
        CHECK(observer.is_signed() == is_signed);
        CHECK(calibration.is_unsigned.at(value) == !is_signed);
        double max = 0.0, magnitude = 0.0;
        for (float v : x.data) {
            const double m = is_signed ? std::abs(v) : std::max(0.0f, v);
            max = std::max(max, m);
            magnitude += m;
        }
        CHECK(observer.count() == x.numel());
        CHECK(observer.max() == doctest::Approx(max).epsilon(1e-5));
        CHECK(observer.mean_magnitude() ==
              doctest::Approx(magnitude / static_cast<double>(x.numel())).epsilon(1e-5));
        // the max rule's range is the max, at every bit-width, memoized or not
        CHECK(calibration.range(value, 4) == observer.max());
        CHECK(calibration.range(value, 4) == observer.max());
        CHECK(calibration.range(value, 8) == observer.max());
    }
    // the graph input is observed directly: exact
    float input_max = 0.0f;
    for (float v : data.images) input_max = std::max(input_max, std::abs(v));
    CHECK(calibration.observers.at(graph.input).max() == input_max);
}

TEST_CASE("calibration ranges follow the method and a copy answers the same") {
    const Graph graph = tiny_residual();
    const Dataset data = random_images(graph, 20, 4);
    CalibrationMethod mse;
    mse.rule = CalibrationRule::mse;
    const Calibration calibration = calibrate(graph, data, mse, 8);
    const Calibration copy = calibration;
    for (const auto& [value, observer] : calibration.observers) {
        CAPTURE(value);
        for (int bits : {2, 4, 8}) {
            CHECK(calibration.range(value, bits) == observer.range(mse, bits));
            CHECK(copy.range(value, bits) == calibration.range(value, bits));
        }
    }
    CHECK_THROWS_WITH_AS(calibration.range("no_such_value", 8),
                         doctest::Contains("no statistics for value 'no_such_value'"), Error);
}

TEST_CASE("calibration rejects images of the wrong shape and an empty set") {
    const Graph graph = tiny_residual();
    Dataset data = random_images(graph, 4, 1);
    data.channels = 1;
    data.height = 16;
    CHECK_THROWS_WITH_AS(calibrate(graph, data, CalibrationMethod{}), doctest::Contains("2x8x8"),
                         Error);
    Dataset empty = random_images(graph, 0, 1);
    CHECK_THROWS_WITH_AS(calibrate(graph, empty, CalibrationMethod{}),
                         doctest::Contains("no calibration images"), Error);
}
