// mpsearch export: a model under a policy file as a standard ONNX QDQ model (docs/export.md) that
// ONNX Runtime runs with the arithmetic of `mpsearch eval --path int`.
#include "search/cli.h"
#include "search/cli_options.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/data/dataset.h"
#include "evaluator/engine/calibrate.h"
#include "evaluator/engine/layer_inputs.h"
#include "evaluator/io/aimet_encodings.h"
#include "evaluator/io/onnx_export_quantized.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/policy_file.h"

#include <cstdio>
#include <iostream>
#include <string>

namespace mps::cli {

namespace {

struct ExportArgs {
    std::string model;
    std::string policy;
    std::string out;
    std::string data = default_fashion_mnist_dir;
    long long calibration = 1000;
    int opset = 13;
    bool float_bias = false;
    std::string encodings;
};

bool parse_export_args(int argc, char** argv, ExportArgs& args) {
    po::options_description options("options");
    options.add_options()
        ("help,h", "print this help")
        ("model", po::value(&args.model)->required(), "ONNX model the policy was made for")
        ("policy", po::value(&args.policy)->required(), "bit-width policy file (docs/policy-format.md)")
        ("out", po::value(&args.out)->required(), "quantized ONNX model to write")
        ("opset", po::value(&args.opset)->default_value(args.opset),
         "13 (int8 weight codes) or 21 (INT4 codes for layers of at most 4 bits)")
        ("float-bias", po::bool_switch(&args.float_bias),
         "no QuantizeLinear on layer outputs and float32 biases: with ONNX Runtime's graph "
         "optimizations off, exactly mpsearch's arithmetic (a reference, not for speed)")
        ("encodings", po::value(&args.encodings),
         "also write an AIMET-style encodings JSON (4 to 16 bits; what it cannot hold is listed)")
        ("data", po::value(&args.data)->default_value(args.data),
         "data set directory (the calibration images)")
        ("calibration", po::value(&args.calibration)->default_value(args.calibration),
         "calibration images (the first N training images), as for mpsearch eval");
    po::variables_map values;
    if (!parse_options(argc, argv, options, values, std::cout)) return false;
    require_positive(args.calibration, "calibration");
    if (args.opset != 13 && args.opset != 21)
        throw Error("--opset must be 13 or 21, got " + std::to_string(args.opset));
    return true;
}

} // namespace

int run_export(int argc, char** argv) {
    ExportArgs args;
    if (!parse_export_args(argc, argv, args)) return 0;
    Graph graph = import_onnx(args.model);
    fold_batch_norm(graph);
    const PolicyFile file = read_policy_file(args.policy, graph, args.model);
    const auto images = std::make_shared<const Dataset>(fashion_mnist_split(
        load_fashion_mnist_training_file(args.data), Split::calibration, args.calibration));
    const Calibration calibration = calibrate(
        graph, *images,
        make_calibration(file.activation_calibration.name, file.activation_calibration.args));
    const auto quantizer = make_prepared_quantizer(file.weight_quantizer, graph, images,
                                                   learned_codes_beside(args.policy));

    QuantizedExportInfo info = export_info_of(file, args.calibration);
    info.source_model_path = args.model;
    info.opset = args.opset;
    info.fuse = !args.float_bias;
    const QuantizedModel model =
        export_quantized_onnx(graph, file.policy, *quantizer, calibration, info, args.out);
    std::printf("wrote %s: opset %d, %d quantizable layers, %d on integer codes, %d of them fused\n",
                args.out.c_str(), args.opset, model.layers, model.integer_layers,
                model.fused_layers);
    for (const std::string& note : model.notes) std::printf("  float: %s\n", note.c_str());
    if (!args.encodings.empty()) {
        const AimetEncodings encodings = aimet_encodings(graph, file.policy, *quantizer, calibration);
        write_file_atomically(args.encodings, encodings.json);
        std::printf("wrote %s\n", args.encodings.c_str());
        for (const std::string& line : encodings.omitted)
            std::printf("  not in the encodings: %s\n", line.c_str());
    }
    return 0;
}

} // namespace mps::cli
