// calibrate(): the float32 values are computed by the oneDNN InferenceEngine on a truncated copy
// of the graph whose output is the observed value (only the nodes that value depends on). That
// costs a few forward passes of prefixes of the network, once per run, and keeps calibration on
// the same fast, tested float engine that evaluates the float32 model.
#include "evaluator/engine/calibrate.h"

#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/ir/bit_policy.h"

#include <algorithm>

namespace mps {

namespace {

std::string shape_text(const std::vector<int64_t>& dims) {
    std::string text;
    for (size_t i = 0; i < dims.size(); ++i) text += (i ? "x" : "") + std::to_string(dims[i]);
    return text;
}

// Observes `value` over all images: the data itself for the graph input, else the float32
// forward pass of the graph truncated at `value`.
void observe_value(const Graph& graph, const std::string& value, const Dataset& images,
                   int64_t batch, ActivationObserver& observer) {
    if (value == graph.input) {
        observer.observe(images.images.data(), images.count * images.image_size());
        return;
    }
    InferenceEngine engine(truncated_at(graph, value), std::min(batch, images.count));
    const int64_t per_image = engine.num_classes(); // floats of `value` per image
    for (int64_t first = 0; first < images.count; first += engine.batch()) {
        const int64_t n = std::min(engine.batch(), images.count - first);
        observer.observe(engine.run(images.image(first), n), n * per_image);
    }
}

} // namespace

Calibration calibrate(const Graph& folded, const Dataset& calibration_images,
                      const CalibrationMethod& method, int64_t batch) {
    if (batch < 1)
        throw Error("calibrate: batch size must be at least 1, got " + std::to_string(batch));
    const std::vector<int64_t> data_shape{calibration_images.channels, calibration_images.height,
                                          calibration_images.width};
    if (folded.input_shape != data_shape)
        throw Error("calibrate: the model expects input " + shape_text(folded.input_shape) +
                    " but the calibration images are " + shape_text(data_shape));
    if (calibration_images.count < 1)
        throw Error("calibrate: no calibration images; use at least one (default 1000)");

    Calibration calibration;
    calibration.method = method;
    calibration.is_unsigned = unsigned_values(folded); // every value, not only the observed ones
    const std::map<std::string, bool>& is_unsigned = calibration.is_unsigned;
    for (const Node* layer : quantizable_layers(folded)) {
        const std::string& value = layer->inputs.at(0);
        if (calibration.observers.count(value)) continue; // read by several layers: once
        const bool value_unsigned = is_unsigned.at(value);
        ActivationObserver observer(!value_unsigned);
        observe_value(folded, value, calibration_images, batch, observer);
        calibration.observers.emplace(value, std::move(observer));
    }
    return calibration;
}

} // namespace mps
