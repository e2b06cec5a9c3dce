// mpsearch eval: float32 accuracy, loss, speed and size of an ONNX model on one data split.
#include "search/cli.h"
#include "search/cli_options.h"

#include "evaluator/dataset.h"
#include "evaluator/error.h"
#include "evaluator/evaluate.h"
#include "evaluator/graph.h"
#include "evaluator/onnx_io.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>

namespace mps::cli {

namespace {

struct EvalArgs {
    std::string model;
    std::string data = default_fashion_mnist_dir;
    std::string split = "test";
    long long limit = -1;
    long long batch = 256;
    bool json = false;
};

bool parse_eval_args(int argc, char** argv, EvalArgs& args) {
    po::options_description options("options");
    options.add_options()
        ("help,h", "print this help")
        ("model", po::value(&args.model)->required(), "ONNX model file")
        ("data", po::value(&args.data)->default_value(args.data), "data set directory")
        ("split", po::value(&args.split)->default_value(args.split), "test or validation")
        ("limit", po::value(&args.limit), "score only the first N images of the split")
        ("batch", po::value(&args.batch)->default_value(args.batch), "images per forward pass")
        ("json", po::bool_switch(&args.json), "print one JSON object");
    po::variables_map values;
    if (!parse_options(argc, argv, options, values, std::cout)) return false;
    if (values.count("limit")) require_positive(args.limit, "limit");
    require_positive(args.batch, "batch");
    const Split split = parse_split(args.split);
    if (split != Split::test && split != Split::validation)
        throw Error("--split must be test or validation, got '" + args.split + "'");
    return true;
}

} // namespace

int run_eval(int argc, char** argv) {
    EvalArgs args;
    if (!parse_eval_args(argc, argv, args)) return 0;

    Graph graph = import_onnx(args.model);
    fold_batch_norm(graph);
    const Dataset data = load_fashion_mnist(args.data, parse_split(args.split));
    const EvalResult result = evaluate_float(graph, data, args.batch, args.limit);

    const int64_t macs = graph_macs(graph);
    const int64_t params = graph_params(graph);
    const int64_t weight_bytes = params * 4;
    if (args.json) {
        nlohmann::json out = {{"accuracy", result.accuracy_percent},
                              {"loss", result.mean_loss},
                              {"images", result.images},
                              {"images_per_second", result.images_per_second},
                              {"macs", macs},
                              {"params", params},
                              {"weight_bytes", weight_bytes}};
        std::cout << out.dump() << "\n";
        return 0;
    }
    std::printf("model              %s\n", args.model.c_str());
    std::printf("split              %s (%lld images)\n", args.split.c_str(),
                static_cast<long long>(result.images));
    std::printf("top-1 accuracy     %.2f %%\n", result.accuracy_percent);
    std::printf("mean loss          %.4f\n", result.mean_loss);
    std::printf("images/s           %.0f\n", result.images_per_second);
    std::printf("MACs per image     %lld\n", static_cast<long long>(macs));
    std::printf("parameters         %lld\n", static_cast<long long>(params));
    std::printf("weight bytes       %lld (float32)\n", static_cast<long long>(weight_bytes));
    return 0;
}

} // namespace mps::cli
