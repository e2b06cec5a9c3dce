// The quantized ONNX export (evaluator/io/export_plan.h, onnx_export_quantized.h): activation and
// weight forms reproduce mpsearch's quantizers bit for bit, biases round within half a unit, and
// the written model carries its codes, fusion and provenance. ONNX Runtime's parity with
// `mpsearch eval --path int` is tests/cli/export_ort.sh.
#include "tests/graph_builders.h"

#include "evaluator/base/error.h"

#include "evaluator/engine/calibrate.h"
#include "evaluator/io/aimet_encodings.h"
#include "evaluator/io/export_plan.h"
#include "evaluator/io/onnx_export_quantized.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/quant/activation_range.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>
#include <onnx/onnx_pb.h>

#include <cmath>
#include <map>
#include <string>

using namespace mps;
using namespace mps::test;

namespace {

// QuantizeLinear (round half to even of x / s, plus the zero point, saturated to uint8), the Clip
// and DequantizeLinear, as ONNX defines them.
float qcdq(float x, const ActivationForm& f) {
    const float q = std::nearbyint(x / f.scale) + static_cast<float>(f.zero_point);
    const float code = std::clamp(std::clamp(q, 0.0f, 255.0f), float(f.code_min), float(f.code_max));
    return (code - static_cast<float>(f.zero_point)) * f.scale;
}

Graph lenet5() {
    Graph g = import_onnx(std::string(MPSEARCH_SOURCE_DIR) + "/models/lenet5.onnx");
    fold_batch_norm(g);
    return g;
}

} // namespace

TEST_CASE("export: QuantizeLinear, Clip, DequantizeLinear of an activation form is mpsearch's fake-quantization") {
    Rng rng(7);
    for (int bits : {1, 2, 3, 4, 5, 6, 7, 8})
        for (bool is_signed : {false, true}) {
            if (is_signed && bits == 1) continue; // binary: float ops
            const float range = 1.7f;
            const ActivationForm f = activation_form(range, bits, is_signed);
            REQUIRE(f.kind == ActivationForm::Kind::codes);
            CHECK(f.zero_point == (is_signed ? 128 : 0));
            const int qmax = activation_qmax(bits, is_signed);
            CHECK(int(f.code_max) - int(f.zero_point) == qmax);
            CHECK(((qmax << f.shift) <= (is_signed ? 127 : 255)));
            CHECK(((qmax << (f.shift + 1)) > (is_signed ? 127 : 255)));
            for (int i = 0; i < 2000; ++i) {
                float x = rng.uniform(-2.5f, 2.5f), expected = x;
                fake_quantize_activation(&expected, 1, range, bits, is_signed);
                CHECK(qcdq(x, f) == expected);
            }
        }
    CHECK(activation_form(1.0f, 1, true).kind == ActivationForm::Kind::binary);
    CHECK(activation_form(1.0f, 16, false).kind == ActivationForm::Kind::emulated);
    const ActivationForm zero = activation_form(0.0f, 4, false); // only zeros seen
    CHECK(qcdq(3.0f, zero) == 0.0f);
    CHECK(qcdq(-3.0f, zero) == 0.0f);
}

TEST_CASE("export: int8 weight codes times their scales are the quantizer's weights bit for bit") {
    Rng rng(3);
    Node layer;
    layer.name = "conv";
    layer.op = Op::conv;
    layer.weight = random_tensor({12, 3, 3, 3}, rng);
    layer.bias = random_tensor({12}, rng);
    LayerBits bits{"conv", 4, {0, 1, 2, 3, 4, 5, 6, 7, 8, 0, 4, 8}};
    std::fill(layer.weight.data.begin() + 27 * 10, layer.weight.data.begin() + 27 * 11, 0.0f);
    const auto uniform = make_weight_quantizer("uniform");
    WeightForm form = weight_form(layer, bits, *uniform);
    REQUIRE(form.integer);
    const Tensor expected = quantize_weights(*uniform, layer.weight, bits.weight_bits);
    for (size_t i = 0; i < expected.data.size(); ++i)
        CHECK(static_cast<float>(form.codes[i]) * form.scales[i / 27] == expected.data[i]);
    CHECK(form.zero_kernel[0]);
    CHECK(form.zero_kernel[9]);
    CHECK(form.zero_kernel[10]); // 4 bits, but all zeros
    CHECK(form.shifts[4] == 4);  // 4 bits: codes up to 7 * 16 = 112
    CHECK(form.shifts[8] == 0);

    const float input_scale = 0.01f;
    const auto codes = bias_codes(layer, form, input_scale);
    REQUIRE(codes);
    for (size_t k = 0; k < 12; ++k) {
        const double unit = double(input_scale * form.scales[k]);
        CHECK(std::fabs((*codes)[k] * unit - layer.bias.data[k]) <= unit / 2 * (1 + 1e-6));
        if (form.zero_kernel[k]) // the stand-in scale keeps the bias to about 20 bits
            CHECK(std::fabs((*codes)[k] * unit - layer.bias.data[k]) <= 1e-5 * std::fabs(layer.bias.data[k]));
    }

    const auto kmeans = make_weight_quantizer("kmeans");
    const WeightForm km = weight_form(layer, bits, *kmeans);
    CHECK_FALSE(km.integer);
    CHECK(km.why_float.find("kmeans") != std::string::npos);
    CHECK(km.dequantized.data == quantize_weights(*kmeans, layer.weight, bits.weight_bits).data);
}

TEST_CASE("export: lenet5 W4A4 fuses every layer whose output reaches the next, records provenance") {
    const Graph g = lenet5();
    const Calibration calibration =
        calibrate(g, random_images({1, 28, 28}, 64, 5), make_calibration("max"));
    const BitPolicy policy = BitPolicy::uniform(g, 4, 4);
    const auto uniform = make_weight_quantizer("uniform");
    const ExportPlan plan = plan_export(g, policy, *uniform, calibration);
    REQUIRE(plan.layers.size() == 5);
    // conv1 -> relu -> pool -> conv2 -> relu -> pool -> flatten -> fc1 -> relu -> fc2 -> relu -> fc3
    for (size_t i = 0; i < 4; ++i) CHECK(plan.layers[i].output.has_value());
    CHECK_FALSE(plan.layers[4].output.has_value()); // the logits stay float
    CHECK(plan.notes.empty());
    CHECK_FALSE(plan_export(g, policy, *uniform, calibration, false).layers[0].output.has_value());

    QuantizedExportInfo info;
    info.source_model_sha256 = std::string(64, 'a');
    info.calibration_images = 64;
    const QuantizedModel model = export_quantized_onnx_bytes(g, policy, *uniform, calibration, info);
    CHECK(model.fused_layers == 4);
    CHECK(model.integer_layers == 5);
    onnx::ModelProto proto;
    REQUIRE(proto.ParseFromString(model.bytes));
    CHECK(proto.opset_import(0).version() == 13);
    std::map<std::string, std::string> meta;
    for (const auto& p : proto.metadata_props()) meta[p.key()] = p.value();
    CHECK(meta["mpsearch.policy"] == "W4A4");
    CHECK(meta["mpsearch.source_model_sha256"] == info.source_model_sha256);
    CHECK(meta["mpsearch.weight_quantizer"] == "uniform");
    int int8 = 0, int32 = 0;
    for (const auto& t : proto.graph().initializer()) {
        int8 += t.data_type() == onnx::TensorProto::INT8;
        int32 += t.data_type() == onnx::TensorProto::INT32;
    }
    CHECK(int8 == 5);  // every layer's weights as codes
    CHECK(int32 == 4); // the fused layers' biases
    CHECK_THROWS_WITH_AS(
        export_quantized_onnx_bytes(g, BitPolicy::uniform(resnet_like({1, 8, 8}, {4}, 10), 4, 4),
                                    *uniform, calibration, info),
        doctest::Contains("policy"), Error);
    info.opset = 17;
    CHECK_THROWS_AS(export_quantized_onnx_bytes(g, policy, *uniform, calibration, info), Error);
}

TEST_CASE("export: AIMET encodings hold the policy's grids at 4 to 16 bits and list the rest") {
    const Graph g = lenet5();
    const Calibration calibration =
        calibrate(g, random_images({1, 28, 28}, 64, 5), make_calibration("max"));
    BitPolicy policy = BitPolicy::uniform(g, 4, 8);
    policy.layers[1].weight_bits[3] = 0; // conv2 prunes a kernel: not expressible
    policy.layers[2].activation_bits = 2; // fc1 reads 2-bit codes: not expressible
    const auto uniform = make_weight_quantizer("uniform");
    const AimetEncodings enc = aimet_encodings(g, policy, *uniform, calibration);
    const auto doc = nlohmann::json::parse(enc.json);
    const auto& conv1 = doc["param_encodings"]["conv1.weight"];
    const Node& node = *g.find_node("conv1");
    REQUIRE(conv1.size() == static_cast<size_t>(kernel_count(node)));
    const int64_t per_kernel = node.weight.numel() / kernel_count(node);
    const float s0 = uniform_scale(std::span<const float>(node.weight.data.data(), per_kernel), 4);
    CHECK(conv1[0]["scale"].get<float>() == s0);
    CHECK(conv1[0]["offset"].get<int>() == -8);
    CHECK(conv1[0]["bitwidth"].get<int>() == 4);
    CHECK_FALSE(doc["param_encodings"].contains("conv2.weight"));
    const auto& input = doc["activation_encodings"]["input"][0];
    CHECK(input["offset"].get<int>() == -128);
    CHECK(input["scale"].get<float>() == activation_scale(calibration.range(g.input, 8), 8, true));
    REQUIRE(enc.omitted.size() == 2);
    CHECK(enc.omitted[0].find("conv2.weight: kernel 3 has 0 bits") != std::string::npos);
    CHECK(enc.omitted[1].find("fc1 input") != std::string::npos);
}
