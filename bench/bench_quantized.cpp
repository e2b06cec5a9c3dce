// Quantized evaluator benchmark: throughput of the float32, fake-quant and integer paths, and of
// the parallel, incremental candidate evaluation a search relies on.
//
//   build/bench/mpsearch_bench_quantized --cases bench/cases/quantized.txt
//       [--runs 5] [--candidates 32] [--seed 1] [--out bench/results/quantized]
//
// Per model:
//   - images/s on the 10k test split at batch 256 (median of --runs runs after one warm-up):
//     float32 (InferenceEngine), fake-quant W4A4 and integer W4A4 (Evaluator, 2 workers; one
//     candidate is spread over the workers batch by batch), wall-clock time of the passes;
//   - candidates/s for --candidates random kernel-wise policies (seeded; weight and activation
//     bits uniform in 2..8, integer path) on the 5k validation split with 1 worker and with 2
//     workers (oneDNN 1 OpenMP thread per worker), the ratio, and 2 workers with OpenMP's default
//     team per worker (nested 2x2) and 1 worker with 2 OpenMP threads, for the threading choice;
//   - incremental speed-up on a greedy step: a base policy (W8A8) evaluated, then its children
//     that each lower one layer to W4A4, from the last layer backwards, in one call; children/s
//     with the incremental cache and without.
// A model entry `zoo:<architecture>` uses a freshly initialized zoo architecture (speed does not
// depend on the weights; accuracy is then meaningless). Writes <out>.json and <out>.md
// atomically and ends with one summary line.
#include "bench/bench_common.h"
#include "evaluator/base/error.h"
#include "evaluator/data/dataset.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/evaluator.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/io/zoo.h"
#include "search/cli_options.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <random>
#include <sstream>

namespace {

using namespace mps::bench;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace po = boost::program_options;


mps::Graph load_model(const std::string& model) {
    mps::Graph graph = model.rfind("zoo:", 0) == 0 ? mps::make_architecture(model.substr(4), 1)
                                                   : mps::import_onnx(model);
    mps::fold_batch_norm(graph);
    return graph;
}


double seconds_of(const std::function<void()>& work) {
    const auto start = Clock::now();
    work();
    return std::chrono::duration<double>(Clock::now() - start).count();
}

// Kernel-wise random policy: every kernel's weight bits and every layer's activation bits drawn
// uniformly from 2..8.
mps::BitPolicy random_policy(const mps::Graph& graph, std::mt19937_64& rng) {
    std::uniform_int_distribution<int> bits(2, 8);
    mps::BitPolicy policy = mps::BitPolicy::uniform(graph, 8, 8);
    for (mps::LayerBits& layer : policy.layers) {
        layer.activation_bits = bits(rng);
        for (int& b : layer.weight_bits) b = bits(rng);
    }
    return policy;
}


json measure_images(const mps::Graph& graph, const mps::EvaluationData& data, int runs) {
    json out;
    { // float32 on the InferenceEngine
        mps::evaluate_float(graph, data.test, 256);
        std::vector<double> rates;
        for (int r = 0; r < runs; ++r) {
            double seconds = seconds_of([&] { mps::evaluate_float(graph, data.test, 256); });
            rates.push_back(static_cast<double>(data.test.count) / seconds);
        }
        out["float32"] = {{"images_per_second", median(rates)}, {"runs", rates}};
    }
    const mps::BitPolicy w4a4 = mps::BitPolicy::uniform(graph, 4, 4);
    for (mps::ExecutionPath path : {mps::ExecutionPath::fake, mps::ExecutionPath::integer}) {
        mps::EvaluatorOptions options;
        options.path = path;
        options.workers = 2;
        options.incremental_cache_bytes = 0;
        mps::Evaluator evaluator(graph, "", data, options);
        mps::Score score = evaluator.evaluate(w4a4, mps::Split::test); // warm-up
        std::vector<double> rates;
        for (int r = 0; r < runs; ++r) {
            double seconds = seconds_of([&] { score = evaluator.evaluate(w4a4, mps::Split::test); });
            rates.push_back(static_cast<double>(data.test.count) / seconds);
        }
        out[path == mps::ExecutionPath::fake ? "fake_w4a4" : "int_w4a4"] = {
            {"images_per_second", median(rates)}, {"runs", rates},
            {"test_accuracy", score.accuracy_percent}};
    }
    return out;
}

// Top-1 agreement of the integer and fake-quant paths on the test split, per policy: W8A8, W4A4,
// W2A8 and `random_count` random kernel-wise policies (seeded). Both paths share one calibration
// and one weight cache, so they differ only in how they compute.
json measure_agreement(const mps::Graph& graph, const mps::EvaluationData& data, int random_count,
                       uint64_t seed) {
    auto calibration = std::make_shared<const mps::Calibration>(
        mps::calibrate(graph, data.calibration, mps::make_calibration("max")));
    auto weights = std::make_shared<mps::WeightCache>(
        graph, std::shared_ptr<const mps::WeightQuantizer>(mps::make_weight_quantizer("uniform")));
    mps::QuantizedNetwork fake(graph, calibration, weights, mps::ExecutionPath::fake, 256);
    mps::QuantizedNetwork integer(graph, calibration, weights, mps::ExecutionPath::integer, 256);
    std::vector<std::pair<std::string, mps::BitPolicy>> policies = {
        {"W8A8", mps::BitPolicy::uniform(graph, 8, 8)},
        {"W4A4", mps::BitPolicy::uniform(graph, 4, 4)},
        {"W2A8", mps::BitPolicy::uniform(graph, 2, 8)}};
    std::mt19937_64 rng(seed);
    for (int i = 0; i < random_count; ++i)
        policies.emplace_back("random" + std::to_string(i + 1), random_policy(graph, rng));
    json out = json::array();
    const mps::Dataset& test = data.test;
    const int64_t classes = fake.num_classes();
    for (const auto& [name, policy] : policies) {
        fake.set_policy(policy);
        integer.set_policy(policy);
        int64_t agree = 0, fake_correct = 0, int_correct = 0;
        for (int64_t first = 0; first < test.count; first += 256) {
            const int64_t n = std::min<int64_t>(256, test.count - first);
            const float* f = fake.run(test.image(first), n);
            std::vector<int> fake_top(n);
            for (int64_t i = 0; i < n; ++i) fake_top[i] = mps::argmax(f + i * classes, classes);
            const float* q = integer.run(test.image(first), n);
            for (int64_t i = 0; i < n; ++i) {
                const int top = mps::argmax(q + i * classes, classes);
                agree += top == fake_top[i];
                fake_correct += fake_top[i] == test.labels[first + i];
                int_correct += top == test.labels[first + i];
            }
        }
        const double images = static_cast<double>(test.count);
        out.push_back({{"policy", name},
                       {"top1_agreement_percent", 100.0 * agree / images},
                       {"fake_accuracy", 100.0 * fake_correct / images},
                       {"int_accuracy", 100.0 * int_correct / images}});
    }
    return out;
}

// candidates/s of `count` random policies on the validation split.
double candidates_per_second(const mps::Graph& graph, const mps::EvaluationData& data, int workers,
                             int onednn_threads, int count, uint64_t seed) {
    mps::EvaluatorOptions options;
    options.workers = workers;
    options.onednn_threads = onednn_threads;
    options.incremental_cache_bytes = 0;
    mps::Evaluator evaluator(graph, "", data, options);
    std::mt19937_64 rng(seed);
    std::vector<mps::BitPolicy> warm_up, candidates;
    for (int i = 0; i < workers; ++i) warm_up.push_back(random_policy(graph, rng));
    for (int i = 0; i < count; ++i) candidates.push_back(random_policy(graph, rng));
    evaluator.evaluate(warm_up, mps::Split::validation); // primitives of every worker
    const double seconds = seconds_of([&] { evaluator.evaluate(candidates, mps::Split::validation); });
    return count / seconds;
}

json measure_candidates(const mps::Graph& graph, const mps::EvaluationData& data, int count,
                        uint64_t seed) {
    const double one = candidates_per_second(graph, data, 1, 1, count, seed);
    const double two = candidates_per_second(graph, data, 2, 1, count, seed);
    const double nested = candidates_per_second(graph, data, 2, 0, count, seed);
    const double one_wide = candidates_per_second(graph, data, 1, 2, count, seed);
    return {{"candidates", count},
            {"seed", seed},
            {"workers1_omp1", one},
            {"workers2_omp1", two},
            {"ratio", two / one},
            {"workers2_omp_default", nested},
            {"workers1_omp2", one_wide}};
}

json measure_incremental(const mps::Graph& graph, const mps::EvaluationData& data, int workers) {
    const mps::BitPolicy base = mps::BitPolicy::uniform(graph, 8, 8);
    std::vector<mps::BitPolicy> children;
    for (size_t l = base.layers.size(); l-- > 0;) {
        mps::BitPolicy child = base;
        child.layers[l].activation_bits = 4;
        for (int& b : child.layers[l].weight_bits) b = 4;
        children.push_back(child);
    }
    json out = {{"children", children.size()}, {"workers", workers}};
    for (bool incremental : {false, true}) {
        mps::EvaluatorOptions options;
        options.workers = workers;
        options.incremental_cache_bytes = incremental ? int64_t{2} << 30 : 0;
        mps::Evaluator evaluator(graph, "", data, options);
        evaluator.evaluate(base, mps::Split::validation); // the previous greedy step
        const double seconds =
            seconds_of([&] { evaluator.evaluate(children, mps::Split::validation); });
        const mps::IncrementalStats stats = evaluator.incremental_stats();
        out[incremental ? "with_cache" : "without_cache"] = {
            {"candidates_per_second", children.size() / seconds},
            {"batches_resumed", stats.batches_resumed},
            {"batches_full", stats.batches_full},
            {"layers_skipped", stats.layers_skipped},
            {"cache_bytes", stats.bytes}};
    }
    out["speedup"] = out["with_cache"]["candidates_per_second"].get<double>() /
                     out["without_cache"]["candidates_per_second"].get<double>();
    return out;
}



// True when some model has measurements under `key` (--measure may leave sections out).
bool measured(const json& results, const char* key) {
    for (const auto& [name, m] : results["models"].items())
        if (m.contains(key)) return true;
    return false;
}

std::string markdown(const json& results) {
    std::ostringstream md;
    md << markdown_header(results, "Quantized evaluator benchmark");
    if (measured(results, "images")) {
        md << "Images/s on the 10k test split, batch 256, median of the runs:\n\n"
           << "| model | float32 | fake W4A4 | int W4A4 | int W4A4 test acc. % |\n"
           << "|---|---:|---:|---:|---:|\n";
    }
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("images")) continue;
        md << "| " << name << " | " << fixed(m["images"]["float32"]["images_per_second"], 0)
           << " | " << fixed(m["images"]["fake_w4a4"]["images_per_second"], 0) << " | "
           << fixed(m["images"]["int_w4a4"]["images_per_second"], 0) << " | "
           << fixed(m["images"]["int_w4a4"]["test_accuracy"], 2) << " |\n";
    }
    if (measured(results, "candidates")) {
        md << "\nCandidates/s, random kernel-wise policies (bits 2..8) on the 5k validation split, "
              "integer path (omp = oneDNN OpenMP threads per worker):\n\n"
           << "| model | 1 worker, omp 1 | 2 workers, omp 1 | ratio | 2 workers, omp default | "
              "1 worker, omp 2 |\n|---|---:|---:|---:|---:|---:|\n";
    }
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("candidates")) continue;
        const json& c = m["candidates"];
        md << "| " << name << " | " << fixed(c["workers1_omp1"], 2) << " | "
           << fixed(c["workers2_omp1"], 2) << " | " << fixed(c["ratio"], 2) << "x | "
           << fixed(c["workers2_omp_default"], 2) << " | " << fixed(c["workers1_omp2"], 2)
           << " |\n";
    }
    if (measured(results, "incremental")) {
        md << "\nIncremental evaluation, one greedy step (children of W8A8 lowering one layer to "
              "W4A4, last layer first), validation split:\n\n"
           << "| model | children | without cache, cand./s | with cache, cand./s | speed-up | "
              "batches resumed |\n|---|---:|---:|---:|---:|---:|\n";
    }
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("incremental")) continue;
        const json& i = m["incremental"];
        md << "| " << name << " | " << i["children"] << " | "
           << fixed(i["without_cache"]["candidates_per_second"], 2) << " | "
           << fixed(i["with_cache"]["candidates_per_second"], 2) << " | "
           << fixed(i["speedup"], 2) << "x | " << i["with_cache"]["batches_resumed"] << " |\n";
    }
    if (measured(results, "agreement")) {
        md << "\nAgreement of the integer and fake-quant paths on the 10k test split (same calibration "
              "and weights; random = kernel-wise 2..8 bits, seeded):\n\n"
           << "| model | policy | top-1 agreement % | fake acc. % | int acc. % |\n"
           << "|---|---|---:|---:|---:|\n";
    }
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("agreement")) continue;
        for (const json& a : m["agreement"])
            md << "| " << name << " | " << a["policy"].get<std::string>() << " | "
               << fixed(a["top1_agreement_percent"], 2) << " | " << fixed(a["fake_accuracy"], 2)
               << " | " << fixed(a["int_accuracy"], 2) << " |\n";
    }
    return md.str();
}

} // namespace

int main(int argc, char** argv) {
    std::string cases_path = "bench/cases/quantized.txt", out = "bench/results/quantized",
                data_dir = mps::default_fashion_mnist_dir;
    std::string measure = "images,candidates,incremental,agreement";
    int runs = 5, candidates = 32, workers = 2;
    uint64_t seed = 1;
    po::options_description options("options");
    options.add_options()("help,h", "print this help")(
        "cases", po::value(&cases_path)->default_value(cases_path), "cases file")(
        "runs", po::value(&runs)->default_value(runs), "images/s runs per model (median)")(
        "candidates", po::value(&candidates)->default_value(candidates),
        "random policies per candidates/s measurement")(
        "seed", po::value(&seed)->default_value(seed), "seed of the random policies")(
        "incremental-workers", po::value(&workers)->default_value(workers),
        "workers of the incremental measurement")(
        "measure", po::value(&measure)->default_value(measure),
        "what to measure (comma-separated subset)")(
        "data", po::value(&data_dir)->default_value(data_dir), "Fashion-MNIST directory")(
        "out", po::value(&out)->default_value(out), "output path without extension");
    try {
        po::variables_map values;
        if (!mps::cli::parse_options(argc, argv, options, values, std::cout)) return 0;
        mps::cli::require_positive(runs, "runs");
        mps::cli::require_positive(candidates, "candidates");
        mps::cli::require_positive(workers, "incremental-workers");
        json results = results_header(argc, argv, "mpsearch_bench_quantized");
        const mps::EvaluationData data = mps::load_evaluation_data(data_dir);
        for (const Case& c : read_cases(cases_path)) {
            const mps::Graph graph = load_model(c.model);
            json m = {{"model", c.model}};
            auto wanted = [&](const std::string& what) {
                return measure.find(what) != std::string::npos;
            };
            if (wanted("images")) m["images"] = measure_images(graph, data, runs);
            if (wanted("candidates")) m["candidates"] = measure_candidates(graph, data, candidates, seed);
            if (wanted("incremental")) m["incremental"] = measure_incremental(graph, data, workers);
            if (wanted("agreement")) m["agreement"] = measure_agreement(graph, data, 3, seed);
            std::printf("%-15s %s\n", c.name.c_str(), m.dump().c_str());
            results["models"][c.name] = m;
        }
        write_results(out, results, markdown(results));
        std::printf("summary: %zu models measured; results in %s.{json,md}\n",
                    results["models"].size(), out.c_str());
        return 0;
    } catch (const mps::Error& e) {
        std::cerr << "mpsearch_bench_quantized: " << e.what() << "\n";
        return 2;
    }
}
