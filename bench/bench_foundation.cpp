// Foundation benchmark: float32 eval and training throughput of each zoo model on oneDNN.
//
//   build/bench/mpsearch_bench_foundation --cases bench/cases/foundation.txt
//       [--pytorch bench/results/pytorch.json] [--runs 5] [--out bench/results/foundation]
//
// Eval: images/s over the 10k test split at batch 256, median of --runs runs (one warm-up run
// first). Train: one epoch of the 55k train split at batch 128 from the architecture's fresh
// initialization (throughput does not depend on the weights), reported as images/s and as seconds
// per 60k-image epoch. With --pytorch, the PyTorch eager figures measured on this machine by
// bench/pytorch_baseline.py are shown beside ours with the ratio. Writes <out>.json and <out>.md
// (atomically) and ends with one summary line.
#include "bench/bench_common.h"
#include "evaluator/base/error.h"
#include "evaluator/data/dataset.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/zoo.h"
#include "evaluator/train/trainer.h"
#include "search/cli_options.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <sstream>

namespace {

using namespace mps::bench;
using nlohmann::json;
namespace po = boost::program_options;



json measure_eval(const mps::Graph& graph, const mps::Dataset& test, int runs) {
    mps::evaluate_float(graph, test, 256); // warm-up: primitive creation, page faults
    std::vector<double> rates;
    double accuracy = 0;
    for (int r = 0; r < runs; ++r) {
        const mps::EvalResult result = mps::evaluate_float(graph, test, 256);
        rates.push_back(result.images_per_second);
        accuracy = result.accuracy_percent;
    }
    return {{"images_per_second", median(rates)}, {"runs", rates}, {"test_accuracy", accuracy}};
}

json measure_train(const std::string& arch, const mps::Dataset& train,
                   const mps::Dataset& validation) {
    mps::Graph graph = mps::make_architecture(arch, 1);
    mps::TrainOptions options;
    options.epochs = 1;
    options.batch = 128;
    options.validation_limit = 256;
    double images_per_second = 0;
    options.on_epoch = [&](const mps::EpochReport& r) { images_per_second = r.images_per_second; };
    mps::train(graph, train, validation, options);
    return {{"images_per_second", images_per_second},
            {"epoch_seconds_60k", 60000.0 / images_per_second}};
}



std::string markdown(const json& results) {
    std::ostringstream md;
    md << markdown_header(results, "Foundation benchmark")
       << "| model | test acc. % | eval images/s (b256, median) | PyTorch eval images/s | ratio "
          "| train images/s | epoch s (60k) | PyTorch epoch s | speed-up |\n"
       << "|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& [name, m] : results["models"].items()) {
        const double eval = m["eval"]["images_per_second"];
        const double epoch = m["train"]["epoch_seconds_60k"];
        std::string torch_eval = "-", eval_ratio = "-", torch_epoch = "-", speedup = "-";
        if (m.contains("pytorch")) {
            const double te = m["pytorch"]["eval_images_per_second"];
            const double tp = m["pytorch"]["train_epoch_seconds_60k"];
            torch_eval = fixed(te, 0);
            eval_ratio = fixed(eval / te, 2) + "x";
            torch_epoch = fixed(tp, 1);
            speedup = fixed(tp / epoch, 2) + "x";
        }
        md << "| " << name << " | " << fixed(m["eval"]["test_accuracy"], 2) << " | "
           << fixed(eval, 0) << " | " << torch_eval << " | " << eval_ratio << " | "
           << fixed(m["train"]["images_per_second"], 0) << " | " << fixed(epoch, 1) << " | "
           << torch_epoch << " | " << speedup << " |\n";
    }
    return md.str();
}

} // namespace

int main(int argc, char** argv) {
    std::string cases_path = "bench/cases/foundation.txt", out = "bench/results/foundation",
                pytorch_path, data = mps::default_fashion_mnist_dir;
    int runs = 5;
    po::options_description options("options");
    options.add_options()("help,h", "print this help")(
        "cases", po::value(&cases_path)->default_value(cases_path), "cases file")(
        "pytorch", po::value(&pytorch_path), "PyTorch baseline JSON (bench/pytorch_baseline.py)")(
        "runs", po::value(&runs)->default_value(runs), "eval runs per model (median)")(
        "data", po::value(&data)->default_value(data), "Fashion-MNIST directory")(
        "out", po::value(&out)->default_value(out), "output path without extension");
    try {
        po::variables_map values;
        if (!mps::cli::parse_options(argc, argv, options, values, std::cout)) return 0;
        mps::cli::require_positive(runs, "runs");
        json results = results_header(argc, argv, "mpsearch_bench_foundation");
        json pytorch;
        if (!pytorch_path.empty()) std::ifstream(pytorch_path) >> pytorch;
        const mps::Dataset test = mps::load_fashion_mnist(data, mps::Split::test);
        const mps::Dataset train = mps::load_fashion_mnist(data, mps::Split::train);
        const mps::Dataset validation = mps::load_fashion_mnist(data, mps::Split::validation);
        for (const Case& c : read_cases(cases_path)) {
            mps::Graph graph = mps::import_onnx(c.model);
            mps::fold_batch_norm(graph);
            json m = {{"model", c.model}, {"eval", measure_eval(graph, test, runs)},
                      {"train", measure_train(c.name, train, validation)}};
            if (pytorch.contains("models") && pytorch["models"].contains(c.name))
                m["pytorch"] = pytorch["models"][c.name];
            std::printf("%-15s eval %8.0f images/s   train %7.0f images/s (%.1f s per 60k)\n",
                        c.name.c_str(), m["eval"]["images_per_second"].get<double>(),
                        m["train"]["images_per_second"].get<double>(),
                        m["train"]["epoch_seconds_60k"].get<double>());
            results["models"][c.name] = m;
        }
        if (pytorch.contains("torch_version")) results["pytorch_version"] = pytorch["torch_version"];
        write_results(out, results, markdown(results));
        std::printf("summary: %zu models measured; results in %s.{json,md}\n",
                    results["models"].size(), out.c_str());
        return 0;
    } catch (const mps::Error& e) {
        std::cerr << "mpsearch_bench_foundation: " << e.what() << "\n";
        return 2;
    }
}
