// mpsearch finetune: quantization-aware fine-tuning of a model under a policy file
// (evaluator/train/finetune.h). Scores the test split before and after with the ordinary Evaluator and
// the policy's quantizers, then writes the tuned model (float master weights) and the same policy
// pointing at it, with the after-figure as its metrics, so that
// `mpsearch eval --model OUT --policy OUT.policy.yaml` reproduces that figure exactly.
#include "search/cli.h"
#include "search/cli_options.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/data/dataset.h"
#include "evaluator/engine/evaluator.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/policy_file.h"
#include "evaluator/ir/graph.h"
#include "evaluator/train/finetune.h"

#include <cstdio>
#include <iostream>

namespace mps::cli {

namespace {

struct FinetuneArgs {
    std::string model, policy, out;
    std::string data = default_fashion_mnist_dir;
    std::string optimizer = "adam";
    int epochs = 0;
    long long batch = 64, seed = 1, calibration = 1000, limit_train = 0, recalibrate = 100;
    double lr = 1e-3, distill = 1.0, temperature = 1.0;
};

bool parse_finetune_args(int argc, char** argv, FinetuneArgs& args) {
    po::options_description options("mpsearch finetune options");
    options.add_options()
        ("help,h", "show this help")
        ("model", po::value(&args.model)->required(), "ONNX model file (batch norm is folded)")
        ("policy", po::value(&args.policy)->required(),
         "policy file of that model (docs/policy-format.md): bits and quantizers to train under")
        ("epochs", po::value(&args.epochs)->required(), "epochs over the train split")
        ("out", po::value(&args.out)->required(),
         "ONNX file to write; its policy goes next to it as <out without .onnx>.policy.yaml")
        ("lr", po::value(&args.lr)->default_value(args.lr), "peak learning rate (cosine decay)")
        ("batch", po::value(&args.batch)->default_value(args.batch), "mini-batch size")
        ("seed", po::value(&args.seed)->default_value(args.seed), "seed of the shuffling")
        ("optimizer", po::value(&args.optimizer)->default_value(args.optimizer), "adam | sgd")
        ("calibration", po::value(&args.calibration)->default_value(args.calibration),
         "calibration images (the first N training images); eval needs the same number")
        ("data", po::value(&args.data)->default_value(args.data), "data set directory")
        ("recalibrate-steps", po::value(&args.recalibrate)->default_value(args.recalibrate),
         "re-calibrate the activation ranges every N steps (0: never), so training sees the "
         "ranges eval will calibrate")
        ("distill", po::value(&args.distill)->default_value(args.distill),
         "weight in [0, 1] of knowledge distillation from the float model (0: labels only)")
        ("distill-temperature", po::value(&args.temperature)->default_value(args.temperature),
         "softmax temperature of the distillation term")
        ("limit-train", po::value(&args.limit_train),
         "train on the first N images of the train split only");
    po::variables_map values;
    if (!parse_options(argc, argv, options, values, std::cout)) return false;
    require_positive(args.epochs, "epochs");
    require_batch(args.batch);
    require_positive(args.calibration, "calibration");
    if (values.count("limit-train")) require_positive(args.limit_train, "limit-train");
    if (!(args.lr > 0)) throw Error("--lr must be positive");
    if (args.recalibrate < 0) throw Error("--recalibrate-steps must be 0 or more");
    if (!(args.distill >= 0 && args.distill <= 1))
        throw Error("--distill must be between 0 and 1, got " + std::to_string(args.distill));
    if (!(args.temperature > 0)) throw Error("--distill-temperature must be positive");
    if (args.seed < 0) throw Error("--seed must not be negative");
    if (args.optimizer != "adam" && args.optimizer != "sgd")
        throw Error("--optimizer must be adam or sgd, got '" + args.optimizer + "'");
    return true;
}

// "dir/m_ft.onnx" -> "dir/m_ft.policy.yaml".
std::string policy_path_for(const std::string& model) {
    const std::string stem =
        model.size() > 5 && model.ends_with(".onnx") ? model.substr(0, model.size() - 5) : model;
    return stem + ".policy.yaml";
}

Score score_on_test(const Graph& graph, const std::string& model_path, const PolicyFile& policy,
                    const EvaluationData& data, int64_t calibration_images) {
    // The options of `mpsearch eval --policy` (its defaults), so that it reproduces the figure.
    EvaluatorOptions options;
    options.calibration_images = calibration_images;
    options.weight_quantizer = policy.weight_quantizer;
    options.calibration_method = policy.activation_calibration;
    options.incremental_cache_bytes = 0;
    Evaluator evaluator(graph, model_path, data, options);
    return evaluator.evaluate(policy.policy, Split::test);
}

// The training options of the command line, with the policy's quantizers; prints each epoch.
FinetuneOptions finetune_options(const FinetuneArgs& args, const PolicyFile& policy) {
    FinetuneOptions options;
    options.epochs = args.epochs;
    options.batch = args.batch;
    options.optimizer = args.optimizer;
    options.lr = args.lr;
    options.seed = static_cast<uint64_t>(args.seed);
    options.recalibrate_steps = args.recalibrate;
    options.distill_weight = args.distill;
    options.distill_temperature = args.temperature;
    options.weight_quantizer = policy.weight_quantizer;
    options.calibration_method = policy.activation_calibration;
    options.on_epoch = [](const FinetuneEpoch& e) {
        std::printf("epoch %3d  loss %.4f  validation %.2f %%  %.0f images/s  %.1f s\n", e.epoch,
                    e.train_loss, e.validation_accuracy, e.images_per_second, e.seconds);
        std::fflush(stdout);
    };
    return options;
}

} // namespace

// Errors escape to main, which maps their kind to the exit code (search/cli.h).
int run_finetune(int argc, char** argv) {
    FinetuneArgs args;
    if (!parse_finetune_args(argc, argv, args)) return 0;
    const std::string policy_out = policy_path_for(args.out);

    Graph graph = import_onnx(args.model);
    fold_batch_norm(graph);
    PolicyFile policy = read_policy_file(args.policy, graph, args.model);

    FinetuneData data;
    const Dataset training_file = load_fashion_mnist_training_file(args.data); // read once
    data.train = fashion_mnist_split(training_file, Split::train);
    if (args.limit_train > 0) data.train = data.train.slice(0, args.limit_train);
    if (args.batch > data.train.count)
        throw Error("--batch " + std::to_string(args.batch) + " is larger than the " +
                    std::to_string(data.train.count) + " training images; lower it");
    data.calibration = fashion_mnist_split(training_file, Split::calibration, args.calibration);
    data.validation = fashion_mnist_split(training_file, Split::validation);
    EvaluationData scored{data.calibration, {}, load_fashion_mnist(args.data, Split::test)};

    std::printf("fine-tuning %s under %s (weights %s, activations %s over %lld calibration "
                "images): %d epochs, batch %lld, %s lr %g, seed %lld, %lld train images, "
                "distillation %g (T %g)\n",
                args.model.c_str(), policy.policy.to_string().c_str(),
                policy.weight_quantizer.name.c_str(), policy.activation_calibration.name.c_str(),
                args.calibration, args.epochs, args.batch, args.optimizer.c_str(), args.lr,
                args.seed, static_cast<long long>(data.train.count), args.distill,
                args.temperature);
    const Score before = score_on_test(graph, args.model, policy, scored, args.calibration);
    std::printf("before  test accuracy %.2f %% (%s path)\n", before.accuracy_percent,
                execution_path_name(before.path));
    std::fflush(stdout);

    const FinetuneResult result =
        finetune(graph, policy.policy, data, finetune_options(args, policy));

    // Score what is written: the exported bytes read back, exactly as eval will read them.
    const std::string bytes = export_onnx_bytes(graph);
    Graph saved = import_onnx_bytes(bytes, args.out);
    fold_batch_norm(saved);
    const Score after = score_on_test(saved, args.out, policy, scored, args.calibration);

    PolicyFile tuned = policy;
    tuned.model_path = args.out;
    tuned.model_sha256 = sha256_hex(bytes);
    PolicyMetrics metrics = metrics_from_costs(after.costs);
    metrics.accuracy = after.accuracy_percent;
    metrics.split = split_name(Split::test);
    tuned.metrics = metrics;
    write_file_atomically(args.out, bytes);
    write_policy_file(policy_out, tuned);

    std::printf("after   test accuracy %.2f %% (%s path), %+.2f points; fine-tuned in %.1f s\n",
                after.accuracy_percent, execution_path_name(after.path),
                after.accuracy_percent - before.accuracy_percent, result.seconds);
    std::printf("wrote %s and %s\n", args.out.c_str(), policy_out.c_str());
    return 0;
}

} // namespace mps::cli
