// mpsearch eval: accuracy, loss, speed and costs of an ONNX model on one data split, in float32
// or under a bit-width policy (--policy FILE or --uniform W4A8) on the integer or fake-quant path.
#include "search/cli.h"
#include "search/cli_options.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/data/data_source.h"
#include "search/run_config.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/evaluator.h"
#include "evaluator/engine/inference.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/policy_file.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <iostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mps::cli {

namespace {

struct EvalArgs {
    std::string model;
    std::string data = default_fashion_mnist_dir;
    std::string data_config; // --data-config FILE: a YAML file with a `data` block
    std::string split = "test";
    long long limit = -1;
    long long batch = 256;
    bool json = false;
    // quantized evaluation
    std::string policy;  // --policy FILE
    std::string uniform; // --uniform W4A8
    std::string path = "int";
    long long calibration = 1000;
    long long workers = 2;
    std::string quantizer = default_weight_quantizer;
    std::string calibration_method = default_calibration_rule;
    std::string write_policy;
    std::string predictions; // --predictions FILE
    bool verbose = false;
    bool quantizer_given = false, calibration_method_given = false, calibration_given = false;

    bool quantized() const { return !policy.empty() || !uniform.empty(); }
};

bool parse_eval_args(int argc, char** argv, EvalArgs& args) {
    const std::string batch_help = "images per batch (run as passes of at most " +
                                   std::to_string(default_pass_images) + ")";
    po::options_description options("options");
    options.add_options()
        ("help,h", "print this help")
        ("model", po::value(&args.model)->required(), "ONNX model file")
        ("data", po::value(&args.data)->default_value(args.data),
         "a folder of idx files, an image folder (one subfolder per class) or an .npz file")
        ("data-config", po::value(&args.data_config),
         "YAML file with a data block as in run configs (splits, preprocess); instead of --data")
        ("split", po::value(&args.split)->default_value(args.split), "test or validation")
        ("limit", po::value(&args.limit), "score only the first N images of the split")
        ("batch", po::value(&args.batch)->default_value(args.batch), batch_help.c_str())
        ("json", po::bool_switch(&args.json), "print one JSON object")
        ("policy", po::value(&args.policy), "bit-width policy file (docs/policy-format.md)")
        ("uniform", po::value(&args.uniform), "uniform policy, e.g. W4A8 (weights 4, activations 8 bits)")
        ("path", po::value(&args.path)->default_value(args.path),
         "execution path of a policy: int (oneDNN int8 where it applies) or fake (float fake-quant)")
        ("calibration", po::value(&args.calibration)->default_value(args.calibration),
         "calibration images (the first N training images)")
        ("workers", po::value(&args.workers)->default_value(args.workers), "evaluation threads")
        ("quantizer", po::value(&args.quantizer)->default_value(args.quantizer),
         "weight quantizer: uniform, mse, adaround, uniform_asymmetric, ls, kmeans, bayesian_bits")
        ("calibration-method", po::value(&args.calibration_method)->default_value(args.calibration_method),
         "activation range calibration: max, percentile, mse")
        ("write-policy", po::value(&args.write_policy),
         "write the evaluated policy with its metrics to this YAML file")
        ("predictions", po::value(&args.predictions),
         "write the predicted class of every scored image to this file, one a line")
        ("verbose", po::bool_switch(&args.verbose), "print the execution path of every layer");
    po::variables_map values;
    if (!parse_options(argc, argv, options, values, std::cout)) return false;
    if (values.count("limit")) require_positive(args.limit, "limit");
    require_batch(args.batch);
    require_positive(args.calibration, "calibration");
    require_positive(args.workers, "workers");
    const Split split = parse_split(args.split);
    if (split != Split::test && split != Split::validation)
        throw Error("--split must be test or validation, got '" + args.split + "'");
    if (!args.data_config.empty() && !values["data"].defaulted())
        throw Error("--data and --data-config both given; choose one");
    if (!args.policy.empty() && !args.uniform.empty())
        throw Error("--policy and --uniform both given; choose one policy");
    args.quantizer_given = !values["quantizer"].defaulted();
    args.calibration_given = !values["calibration"].defaulted();
    args.calibration_method_given = !values["calibration-method"].defaulted();
    if (!args.quantized()) {
        for (const char* flag : {"path", "calibration", "workers", "quantizer",
                                 "calibration-method", "write-policy"})
            if (values.count(flag) && !values[flag].defaulted())
                throw Error(std::string("--") + flag +
                            " applies to a quantized evaluation; add --policy FILE or --uniform WxAy");
    }
    parse_execution_path(args.path); // rejects anything but int / fake now, before loading
    return true;
}

// The data as --data or --data-config says; the color defaults to the model's channels.
DataConfig eval_data(const EvalArgs& args, const Graph& graph) {
    DataConfig config;
    if (!args.data_config.empty()) {
        config = load_data_config(args.data_config, graph);
    } else {
        config.data = detect_data_source(args.data);
        if (!graph.input_shape.empty()) config.data.preprocess.channels = graph.input_shape[0];
    }
    if (const std::string warning = default_normalization_warning(config.data); !warning.empty())
        std::cerr << "mpsearch eval: " << warning << "\n";
    return config;
}

int64_t model_classes(const Graph& graph) { return Tensor::count(graph.shapes.at(graph.output)); }

// The scored split (its first --limit images), checked against the model.
Dataset scored_split(const EvalArgs& args, const Graph& graph, const DataConfig& config) {
    const Split split = parse_split(args.split);
    Dataset scored = load_split(config.data, split, args.calibration, model_classes(graph));
    if (split == Split::validation && config.validation_images > 0)
        scored = scored.slice(0, config.validation_images);
    check_data_fits(graph, args.model, config.data, scored);
    return scored;
}

// --predictions: the argmax of every image's logits, one a line, through `net` (float or quantized)
// in passes of `pass` images.
template <typename Network>
void write_argmax_lines(const std::string& path, const Dataset& data, Network& net, int64_t pass) {
    std::string text;
    for (int64_t first = 0; first < data.count; first += pass) {
        const int64_t n = std::min(pass, data.count - first);
        const float* logits = net.run(data.image(first), n);
        for (int64_t i = 0; i < n; ++i)
            text += std::to_string(argmax(logits + i * net.num_classes(), net.num_classes())) + "\n";
    }
    write_file_atomically(path, text);
}

int report_float(const EvalArgs& args, const Graph& graph) {
    const Dataset data = scored_split(args, graph, eval_data(args, graph));
    const EvalResult result = evaluate_float(graph, data, args.batch, args.limit);
    if (!args.predictions.empty()) {
        const Dataset scored = args.limit > 0 ? data.slice(0, std::min<int64_t>(args.limit, data.count)) : data;
        InferenceEngine net(graph, args.batch);
        write_argmax_lines(args.predictions, scored, net, args.batch);
    }

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

// The policy to evaluate and the quantizers it assumes: from the policy file (whose quantizers
// win; contradicting flags are an error) or from --uniform and the flags.
struct QuantizedSetup {
    BitPolicy policy;
    QuantizerSpec weight_quantizer;
    QuantizerSpec calibration;
};

QuantizedSetup quantized_setup(const EvalArgs& args, const Graph& graph) {
    if (args.policy.empty())
        return {BitPolicy::uniform(graph, args.uniform),
                {args.quantizer, make_weight_quantizer(args.quantizer)->args()}, // with defaults
                {args.calibration_method, {}}};
    PolicyFile file = read_policy_file(args.policy, graph, args.model);
    if (args.quantizer_given && args.quantizer != file.weight_quantizer.name)
        throw Error("--quantizer " + args.quantizer + " contradicts " + args.policy +
                    ", which was made with the '" + file.weight_quantizer.name +
                    "' weight quantizer; drop --quantizer (the file's quantizer is used)");
    if (args.calibration_method_given && args.calibration_method != file.activation_calibration.name)
        throw Error("--calibration-method " + args.calibration_method + " contradicts " +
                    args.policy + ", which was made with '" + file.activation_calibration.name +
                    "' calibration; drop --calibration-method (the file's is used)");
    return {std::move(file.policy), file.weight_quantizer, file.activation_calibration};
}

// The evaluator's options for one quantized evaluation of `setup` as the flags ask.
EvaluatorOptions quantized_options(const EvalArgs& args, const QuantizedSetup& setup) {
    EvaluatorOptions options;
    options.calibration_images = args.calibration;
    options.weight_quantizer = setup.weight_quantizer;
    options.calibration_method = setup.calibration;
    options.path = parse_execution_path(args.path);
    options.workers = static_cast<int>(args.workers);
    options.batch = args.batch;
    options.incremental_cache_bytes = 0; // one candidate: nothing to reuse
    if (!args.policy.empty()) options.quantizer_cache_dir = learned_codes_beside(args.policy);
    return options;
}

// The calibration images and the scored split (its first --limit images).
EvaluationData quantized_data(const EvalArgs& args, const Graph& graph, Split split) {
    const DataConfig config = eval_data(args, graph);
    if (!config.data.is_idx()) {
        EvaluationData data;
        data.calibration = load_split(config.data, Split::calibration, args.calibration,
                                      model_classes(graph));
        Dataset scored = scored_split(args, graph, config);
        if (args.limit > 0) scored = scored.slice(0, args.limit);
        (split == Split::test ? data.test : data.validation) = std::move(scored);
        return data;
    }
    EvaluationData data;
    // Calibration images come from the training file; so does a validation split: read it once.
    const Dataset training_file = load_fashion_mnist_training_file(config.data.idx_dir);
    data.calibration = fashion_mnist_split(training_file, Split::calibration, args.calibration);
    Dataset scored = split == Split::test ? load_fashion_mnist(config.data.idx_dir, split)
                                          : fashion_mnist_split(training_file, split);
    if (args.limit > 0) scored = scored.slice(0, args.limit);
    (split == Split::test ? data.test : data.validation) = std::move(scored);
    return data;
}

// --write-policy: the evaluated policy with its quantizers and the metrics just measured.
void write_evaluated_policy(const EvalArgs& args, const QuantizedSetup& setup, const Score& score) {
    PolicyFile file;
    file.model_path = args.model;
    file.model_sha256 = sha256_file(args.model);
    file.weight_quantizer = setup.weight_quantizer;
    file.activation_calibration = setup.calibration;
    file.policy = setup.policy;
    PolicyMetrics metrics = metrics_from_costs(score.costs);
    metrics.accuracy = score.accuracy_percent;
    metrics.split = args.split;
    file.metrics = metrics;
    write_policy_file(args.write_policy, file);
}

// --predictions: the argmax of every image's logits through a network of the evaluator's own
// calibration, quantizer and path, in passes of the evaluator's size (the integer kernels' logits
// do not depend on it).
void write_predictions(const std::string& path, const Evaluator& evaluator,
                       const BitPolicy& policy, Split split) {
    const EvaluatorOptions& options = evaluator.options();
    const int64_t pass = std::min(options.pass_images, options.batch);
    QuantizedNetwork net(evaluator.graph(),
                         std::make_shared<const Calibration>(evaluator.calibration()),
                         std::make_shared<WeightCache>(evaluator.graph(),
                                                       evaluator.weight_cache().shared_quantizer()),
                         options.path, pass);
    net.set_policy(policy);
    write_argmax_lines(path, evaluator.data(split), net, pass);
}

// What a quantized evaluation measured, for the reports below.
struct QuantizedResult {
    Score score;
    double images_per_second = 0.0;
    std::vector<std::string> decisions; // --verbose: the execution path of every layer
    double calibration_seconds = 0.0;
};

void print_quantized_json(const EvalArgs& args, const Graph& graph, const QuantizedSetup& setup,
                          const QuantizedResult& result) {
    const Score& score = result.score;
    const Costs& costs = score.costs;
    nlohmann::json out = {{"accuracy", score.accuracy_percent},
                          {"loss", score.mean_loss},
                          {"images", score.images},
                          {"images_per_second", result.images_per_second},
                          {"macs", costs.macs},
                          {"params", graph_params(graph)},
                          {"weight_bytes", costs.weight_bytes()},
                          {"relative_weight_bytes", costs.relative_weight_bytes()},
                          {"bitops", costs.bitops},
                          {"relative_bitops", costs.relative_bitops()},
                          {"flops", costs.flops},
                          {"peak_activation_bytes", costs.peak_activation_bytes()},
                          {"path", execution_path_name(score.path)},
                          {"policy", setup.policy.to_string()},
                          {"weight_quantizer", setup.weight_quantizer.name},
                          {"calibration_method", setup.calibration.name},
                          {"calibration_images", args.calibration}};
    if (args.verbose) {
        out["path_decisions"] = result.decisions;
        out["calibration_seconds"] = result.calibration_seconds;
    }
    std::cout << out.dump() << "\n";
}

void print_quantized_text(const EvalArgs& args, const QuantizedSetup& setup,
                          const QuantizedResult& result) {
    const Score& score = result.score;
    const Costs& costs = score.costs;
    std::printf("model              %s\n", args.model.c_str());
    std::printf("policy             %s\n", setup.policy.to_string().c_str());
    std::printf("quantizers         weights %s, activations %s over %lld calibration images\n",
                setup.weight_quantizer.name.c_str(), setup.calibration.name.c_str(), args.calibration);
    std::printf("path               %s\n", execution_path_name(score.path));
    std::printf("split              %s (%lld images)\n", args.split.c_str(),
                static_cast<long long>(score.images));
    std::printf("top-1 accuracy     %.2f %%\n", score.accuracy_percent);
    std::printf("mean loss          %.4f\n", score.mean_loss);
    std::printf("images/s           %.0f\n", result.images_per_second);
    std::printf("MACs per image     %lld\n", static_cast<long long>(costs.macs));
    std::printf("BitOPs per image   %lld (%.4f of float32)\n", static_cast<long long>(costs.bitops),
                costs.relative_bitops());
    std::printf("weight bytes       %.1f (%.4f of float32)\n", costs.weight_bytes(),
                costs.relative_weight_bytes());
    std::printf("peak activations   %.1f bytes per image (%.4f of float32)\n",
                costs.peak_activation_bytes(), costs.relative_peak_activation());
    if (args.verbose) {
        std::printf("calibration        %.3f s\n", result.calibration_seconds);
        for (const std::string& line : result.decisions) std::printf("  %s\n", line.c_str());
    }
    if (!args.write_policy.empty()) std::printf("policy written to  %s\n", args.write_policy.c_str());
}

// Scores the policy (the file's or --uniform's) on the split, writes it if asked, then reports.
int report_quantized(const EvalArgs& args, const Graph& graph) {
    const QuantizedSetup setup = quantized_setup(args, graph);
    EvaluatorOptions options = quantized_options(args, setup);
    const Split split = parse_split(args.split);
    Evaluator evaluator(graph, args.model, quantized_data(args, graph, split),
                        std::move(options));
    QuantizedResult result;
    result.score = evaluator.evaluate(setup.policy, split);
    const Score& score = result.score;
    result.images_per_second = score.seconds > 0 ? score.images / score.seconds : 0.0;
    if (args.verbose) {
        result.decisions = evaluator.path_decisions(setup.policy);
        result.calibration_seconds = evaluator.calibration_seconds();
    }
    if (!args.write_policy.empty()) write_evaluated_policy(args, setup, score);
    if (!args.predictions.empty()) write_predictions(args.predictions, evaluator, setup.policy, split);
    if (args.json) print_quantized_json(args, graph, setup, result);
    else print_quantized_text(args, setup, result);
    return 0;
}

} // namespace

int run_eval(int argc, char** argv) {
    EvalArgs args;
    if (!parse_eval_args(argc, argv, args)) return 0;

    Graph graph = import_onnx(args.model);
    fold_batch_norm(graph);
    // A data block's calibration_images counts unless --calibration says otherwise.
    if (!args.data_config.empty() && !args.calibration_given)
        args.calibration = load_data_config(args.data_config, graph).calibration_images;
    return args.quantized() ? report_quantized(args, graph) : report_float(args, graph);
}

} // namespace mps::cli
