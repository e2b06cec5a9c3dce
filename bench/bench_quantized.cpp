// Quantized evaluator benchmark: throughput of the float32, fake-quant and integer paths, and of
// the parallel, incremental candidate evaluation a search relies on.
//
//   build/bench/mpsearch_bench_quantized --cases bench/cases/quantized.txt
//       [--runs 5] [--candidates 32] [--seed 1] [--pytorch /usr/bin/python3]
//       [--measure images,candidates,incremental,agreement | descent]
//       [--out bench/results/quantized]
//
// Per model:
//   - images/s on the 10k test split at batch 256, run as the evaluators' passes of
//     default_pass_images (median of --runs runs after one warm-up):
//     float32 (InferenceEngine), fake-quant W4A4 and integer W4A4 (Evaluator, 2 workers; one
//     candidate is spread over the workers batch by batch), wall-clock time of the passes; in
//     the same run, the per-layer int8 bound of mpsearch_bench_peak (every conv / fully connected
//     layer alone as an int8 oneDNN primitive, bench_common.h) and PyTorch's fake-quant W4A4
//     (bench/pytorch_baseline.py --measure fake_w4a4 as a subprocess of --pytorch; "n/a" with
//     the reason when it cannot run), and the ratios between them;
//   - candidates/s for --candidates random kernel-wise policies (seeded; weight and activation
//     bits uniform in 2..8, integer path) on the 5k validation split with 1 worker and with 2
//     workers (oneDNN 1 OpenMP thread per worker), the ratio, and 2 workers with OpenMP's default
//     team per worker (nested 2x2) and 1 worker with 2 OpenMP threads, for the threading choice;
//   - incremental speed-up on a greedy step: a base policy (W8A8) evaluated, then its children
//     that each lower one layer to W4A4, from the last layer backwards, in one call; children/s
//     with the incremental cache and without;
//   - descent (only when --measure names it): greedy_sensitivity's descent candidates/s, the
//     policy run by the search's own run loop (run_search) on the zoo config
//     <--descent-configs>/<architecture>/greedy_sensitivity.yaml, timed from its archive records.
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
#include "search/run.h"
#include "search/run_config.h"

#include <sys/wait.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <fstream>
#include <iostream>
#include <iterator>
#include <map>
#include <optional>
#include <random>
#include <sstream>

namespace {

using namespace mps::bench;
using nlohmann::json;
using Clock = std::chrono::steady_clock;
namespace fs = std::filesystem;
namespace po = boost::program_options;

// Workers of the fake and integer images/s passes; the int8-layer bound is timed with as many
// OpenMP threads, so both use the same cores.
constexpr int images_workers = 2;

// How the PyTorch fake-quant column is measured: `python script --measure fake_w4a4 ...`.
struct PytorchOptions {
    std::string python = "/usr/bin/python3";
    std::string script = "bench/pytorch_baseline.py";
};

// Where the descent measurement finds greedy's config, and what it may change in it.
struct DescentOptions {
    std::string configs_dir = "configs";
    int64_t validation_images = 0; // 0: the config's own
    std::string data_dir = mps::default_fashion_mnist_dir;
    int64_t min_macs_per_byte = -1; // -1: the evaluator's default
};

// The zoo architecture a case's model is: "zoo:resnet8" and "models/resnet8.onnx" are resnet8.
std::string architecture_of(const std::string& model) {
    if (model.rfind("zoo:", 0) == 0) return model.substr(4);
    return fs::path(model).stem().string();
}

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


json measure_float32(const mps::Graph& graph, const mps::EvaluationData& data, int runs) {
    mps::evaluate_float(graph, data.test, 256); // warm-up
    std::vector<double> rates;
    for (int r = 0; r < runs; ++r) {
        double seconds = seconds_of([&] { mps::evaluate_float(graph, data.test, 256); });
        rates.push_back(static_cast<double>(data.test.count) / seconds);
    }
    return {{"images_per_second", median(rates)}, {"runs", rates}};
}

// Uniform W4A4 on `path` (Evaluator, images_workers workers, no incremental cache: every pass
// computes every layer).
json measure_w4a4(const mps::Graph& graph, const mps::EvaluationData& data,
                  mps::ExecutionPath path, int runs) {
    const mps::BitPolicy w4a4 = mps::BitPolicy::uniform(graph, 4, 4);
    mps::EvaluatorOptions options;
    options.path = path;
    options.workers = images_workers;
    options.incremental_cache_bytes = 0;
    mps::Evaluator evaluator(graph, "", data, options);
    mps::Score score = evaluator.evaluate(w4a4, mps::Split::test); // warm-up
    std::vector<double> rates;
    for (int r = 0; r < runs; ++r) {
        double seconds = seconds_of([&] { score = evaluator.evaluate(w4a4, mps::Split::test); });
        rates.push_back(static_cast<double>(data.test.count) / seconds);
    }
    return {{"images_per_second", median(rates)}, {"runs", rates},
            {"test_accuracy", score.accuracy_percent}};
}

// `text` as one word for /bin/sh.
std::string shell_quoted(const std::string& text) {
    std::string quoted = "'";
    for (const char c : text) quoted += c == '\'' ? std::string("'\\''") : std::string(1, c);
    return quoted + "'";
}

struct CommandOutput {
    int exit_status = -1; // -1: did not exit normally
    std::string out, err;
};

// Runs `command` under /bin/sh and collects its stdout and (through a temporary file) its stderr.
CommandOutput run_command(const std::string& command) {
    const fs::path err_file = fs::temp_directory_path() /
                              ("mpsearch_bench_quantized_" + std::to_string(::getpid()) + ".err");
    CommandOutput result;
    FILE* pipe = ::popen((command + " 2>" + shell_quoted(err_file.string())).c_str(), "r");
    if (!pipe) throw mps::Failure("cannot start '" + command + "'");
    char buffer[4096];
    for (size_t n; (n = std::fread(buffer, 1, sizeof buffer, pipe)) > 0;)
        result.out.append(buffer, n);
    const int status = ::pclose(pipe);
    if (status != -1 && WIFEXITED(status)) result.exit_status = WEXITSTATUS(status);
    std::ifstream err(err_file);
    result.err.assign(std::istreambuf_iterator<char>(err), std::istreambuf_iterator<char>());
    std::error_code ignored;
    fs::remove(err_file, ignored);
    return result;
}

// The last non-empty line of `text` (a Python traceback ends with the exception).
std::string last_line(const std::string& text) {
    std::istringstream lines(text);
    std::string last;
    for (std::string line; std::getline(lines, line);)
        if (line.find_first_not_of(" \t\r") != std::string::npos) last = line;
    return last;
}

// PyTorch fake-quant W4A4 images/s of `architecture`, measured now by pytorch_baseline.py, or
// {"images_per_second": null, "note": why} when it cannot run (no torch, no such architecture,
// no Python): a comparison that is missing must not stop the engine's own figures.
json pytorch_fake_w4a4(const PytorchOptions& pytorch, const std::string& architecture, int runs) {
    const std::string command = shell_quoted(pytorch.python) + " " + shell_quoted(pytorch.script) +
                                " --measure fake_w4a4 --models " + shell_quoted(architecture) +
                                " --runs " + std::to_string(runs) + " --json -";
    const CommandOutput run = run_command(command);
    const json out = json::parse(run.out, nullptr, false);
    const json* model = nullptr;
    if (run.exit_status == 0 && out.is_object() && out.contains("models") &&
        out["models"].contains(architecture))
        model = &out["models"][architecture];
    if (!model) {
        const std::string why = last_line(run.err);
        return {{"images_per_second", nullptr},
                {"command", command},
                {"note", "exit status " + std::to_string(run.exit_status) +
                             (why.empty() ? ", no JSON on stdout" : ": " + why)}};
    }
    return {{"images_per_second", (*model)["fake_w4a4_images_per_second"]},
            {"runs", (*model)["runs_images_per_second"]},
            {"torch_version", out["torch_version"]},
            {"threads", out["threads"]},
            {"command", command}};
}

// numerator / denominator of two images/s entries, null when either is missing.
json ratio(const json& numerator, const json& denominator) {
    if (numerator.is_null() || denominator.is_null()) return nullptr;
    return numerator.get<double>() / denominator.get<double>();
}

json measure_images(const mps::Graph& graph, const mps::EvaluationData& data, int runs,
                    const std::string& architecture, const PytorchOptions& pytorch) {
    json out = {{"float32", measure_float32(graph, data, runs)},
                {"fake_w4a4", measure_w4a4(graph, data, mps::ExecutionPath::fake, runs)},
                {"int_w4a4", measure_w4a4(graph, data, mps::ExecutionPath::integer, runs)}};
    const dnnl::engine engine(dnnl::engine::kind::cpu, 0);
    out["int8_layers"] = int8_layer_bound(graph, images_workers, runs, engine);
    out["pytorch_fake_w4a4"] = pytorch_fake_w4a4(pytorch, architecture, runs);
    const json& fp32 = out["float32"]["images_per_second"];
    const json& fake = out["fake_w4a4"]["images_per_second"];
    const json& integer = out["int_w4a4"]["images_per_second"];
    const json& torch = out["pytorch_fake_w4a4"]["images_per_second"];
    out["ratios"] = {
        {"int_over_float32", ratio(integer, fp32)},
        {"int_over_int8_layer_bound",
         ratio(integer, out["int8_layers"]["bound_images_per_second_int8_layers"])},
        {"fake_over_pytorch_fake", ratio(fake, torch)},
        {"int_over_pytorch_fake", ratio(integer, torch)}};
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
            {"passes_resumed", stats.passes_resumed},
            {"passes_full", stats.passes_full},
            {"layers_skipped", stats.layers_skipped},
            {"cache_bytes", stats.bytes}};
    }
    out["speedup"] = out["with_cache"]["candidates_per_second"].get<double>() /
                     out["without_cache"]["candidates_per_second"].get<double>();
    return out;
}


// The zoo config `path` of greedy_sensitivity as `mpsearch search` would run it (bits, pins,
// budget, max_evaluations, batch, workers, validation images, evaluator defaults with the
// incremental cache on), on the case's model and data, with three changes that leave the
// descent as it is: refinement (which follows the descent) is off, no uniform baselines (scored
// after the search), and the run directory is `output`.
std::string descent_config_text(const std::string& path, const Case& c,
                                const DescentOptions& options, const std::string& output) {
    YAML::Node config = YAML::LoadFile(path);
    config["model"] = c.model;
    config["data"]["dir"] = options.data_dir;
    if (options.validation_images > 0)
        config["data"]["validation_images"] = options.validation_images;
    config["policy"]["refine"] = false;
    config["baselines"] = YAML::Load("[]");
    config["output"] = output;
    YAML::Emitter text;
    text << config;
    return text.c_str();
}

// Candidates, batches and seconds per stage of a run's records. A batch's seconds run from the
// end of the batch before it (a record's elapsed_seconds is when its batch finished), so they
// hold the policy's propose(), the evaluation and the archive write: what the search spends per
// batch. The first batch's time also holds the run's set-up (evaluator, FP32 reference), so it
// is left out and its stage has no seconds.
json stage_timings(const std::vector<mps::ArchiveRecord>& records) {
    struct StageTime {
        int64_t candidates = 0, batches = 0;
        double seconds = 0.0;
        bool holds_first_batch = false;
    };
    std::map<std::string, StageTime> stages;
    std::optional<double> previous_end;
    int64_t batch = -1;
    for (const mps::ArchiveRecord& r : records) {
        StageTime& stage = stages[r.stage];
        ++stage.candidates;
        if (r.batch == batch) continue;
        batch = r.batch;
        ++stage.batches;
        if (previous_end) stage.seconds += r.elapsed_seconds - *previous_end;
        else stage.holds_first_batch = true;
        previous_end = r.elapsed_seconds;
    }
    json out = json::object();
    for (const auto& [name, stage] : stages) {
        const json seconds = stage.holds_first_batch ? json(nullptr) : json(stage.seconds);
        out[name] = {{"candidates", stage.candidates},
                     {"batches", stage.batches},
                     {"seconds", seconds},
                     {"candidates_per_second", ratio(stage.candidates, seconds)}};
    }
    return out;
}

// Removes a run directory however its run ends.
struct RemovedOnExit {
    fs::path dir;
    ~RemovedOnExit() {
        std::error_code ignored;
        fs::remove_all(dir, ignored);
    }
};

// greedy_sensitivity run by the search's run loop on the case's zoo config, until the policy
// finishes its descent; the descent stage's candidates/s, with the other stages for context.
json measure_descent(const Case& c, const DescentOptions& options) {
    const std::string architecture = architecture_of(c.model);
    const fs::path config_path =
        fs::path(options.configs_dir) / architecture / "greedy_sensitivity.yaml";
    if (c.model.rfind("zoo:", 0) == 0)
        return {{"skipped",
                 "the search reads its model from an ONNX file; give one instead of " + c.model}};
    if (!fs::exists(config_path)) return {{"skipped", "no " + config_path.string()}};
    const fs::path run_dir =
        fs::temp_directory_path() /
        ("mpsearch_bench_descent_" + std::to_string(::getpid()) + "_" + c.name);
    fs::remove_all(run_dir);
    const RemovedOnExit removed{run_dir};
    const mps::RunConfig config = mps::parse_run_config(
        descent_config_text(config_path.string(), c, options, run_dir.string()),
        config_path.string() + " (descent measurement)");
    mps::RunOptions run_options;
    run_options.quiet = true;
    const mps::EvaluatorOptions defaults;
    const int64_t min_macs_per_byte = options.min_macs_per_byte >= 0
                                          ? options.min_macs_per_byte
                                          : defaults.incremental_min_macs_per_byte;
    run_options.tune_evaluator = [min_macs_per_byte](mps::EvaluatorOptions& evaluator) {
        evaluator.incremental_min_macs_per_byte = min_macs_per_byte;
    };
    const mps::RunResult result = mps::run_search(config, run_options);
    json stages = stage_timings(result.records);
    const json descent = stages.contains("descent") ? stages["descent"] : json::object();
    return {{"config", config_path.string()},
            {"validation_images", config.validation_images},
            {"workers", config.workers},
            {"max_evaluations", config.max_evaluations},
            {"incremental_min_macs_per_byte", min_macs_per_byte},
            {"evaluations", result.records.size()},
            {"stop_reason", result.stop_reason},
            {"stages", stages},
            {"descent_candidates", descent.value("candidates", 0)},
            {"descent_seconds", descent.value("seconds", json(nullptr))},
            {"descent_candidates_per_second",
             descent.value("candidates_per_second", json(nullptr))}};
}



// True when some model has measurements under `key` (--measure may leave sections out).
bool measured(const json& results, const char* key) {
    for (const auto& [name, m] : results["models"].items())
        if (m.contains(key)) return true;
    return false;
}

// A figure of the tables, or "n/a" where it could not be measured.
std::string figure(const json& value, int digits, const char* unit = "") {
    return value.is_null() ? "n/a" : fixed(value.get<double>(), digits) + unit;
}

// The PyTorch version of the first model whose PyTorch figure was measured, for the caption.
std::string torch_version(const json& results) {
    for (const auto& [name, m] : results["models"].items())
        if (m.contains("images") && m["images"]["pytorch_fake_w4a4"].contains("torch_version"))
            return m["images"]["pytorch_fake_w4a4"]["torch_version"].get<std::string>();
    return "not measured";
}

std::string images_table(const json& results) {
    std::ostringstream md;
    md << "Images/s on the 10k test split, batch 256 in passes of " << mps::default_pass_images
       << " images, median of the runs. int8-layer bound: every "
          "conv / fully connected layer timed alone as an int8 oneDNN primitive (batch "
       << layer_batch << ", " << images_workers
       << " OpenMP threads, layouts oneDNN picks), images/s of the sum of their times, as in "
          "mpsearch_bench_peak (it counts only the MACs). PyTorch fake W4A4: "
          "bench/pytorch_baseline.py --measure fake_w4a4 in this run (PyTorch "
       << torch_version(results)
       << ", 2 threads, channels_last, jit.trace + freeze; weights quantized once per output "
          "channel, every conv / linear input per tensor, as mpsearch's spec):\n\n"
       << "| model | float32 | fake W4A4 | int W4A4 | int / float32 | int8-layer bound | "
          "int / bound | PyTorch fake W4A4 | fake / PyTorch | int / PyTorch | int W4A4 test acc. % "
          "|\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    std::string notes;
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("images")) continue;
        const json& i = m["images"];
        const json& r = i["ratios"];
        md << "| " << name << " | " << figure(i["float32"]["images_per_second"], 0) << " | "
           << figure(i["fake_w4a4"]["images_per_second"], 0) << " | "
           << figure(i["int_w4a4"]["images_per_second"], 0) << " | "
           << figure(r["int_over_float32"], 2, "x") << " | "
           << figure(i["int8_layers"]["bound_images_per_second_int8_layers"], 0) << " | "
           << figure(r["int_over_int8_layer_bound"], 2) << " | "
           << figure(i["pytorch_fake_w4a4"]["images_per_second"], 0) << " | "
           << figure(r["fake_over_pytorch_fake"], 2, "x") << " | "
           << figure(r["int_over_pytorch_fake"], 2, "x") << " | "
           << figure(i["int_w4a4"]["test_accuracy"], 2) << " |\n";
        if (i["pytorch_fake_w4a4"].contains("note"))
            notes += "- PyTorch n/a for " + name + ": " +
                     i["pytorch_fake_w4a4"]["note"].get<std::string>() + " (`" +
                     i["pytorch_fake_w4a4"]["command"].get<std::string>() + "`)\n";
    }
    if (!notes.empty()) md << "\n" << notes;
    return md.str();
}

std::string candidates_table(const json& results) {
    std::ostringstream md;
    md << "\nCandidates/s, random kernel-wise policies (bits 2..8) on the 5k validation split, "
          "integer path (omp = oneDNN OpenMP threads per worker):\n\n"
       << "| model | 1 worker, omp 1 | 2 workers, omp 1 | ratio | 2 workers, omp default | "
          "1 worker, omp 2 |\n|---|---:|---:|---:|---:|---:|\n";
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("candidates")) continue;
        const json& c = m["candidates"];
        md << "| " << name << " | " << fixed(c["workers1_omp1"], 2) << " | "
           << fixed(c["workers2_omp1"], 2) << " | " << fixed(c["ratio"], 2) << "x | "
           << fixed(c["workers2_omp_default"], 2) << " | " << fixed(c["workers1_omp2"], 2)
           << " |\n";
    }
    return md.str();
}

std::string incremental_table(const json& results) {
    std::ostringstream md;
    md << "\nIncremental evaluation, one greedy step (children of W8A8 lowering one layer to "
          "W4A4, last layer first), validation split:\n\n"
       << "| model | children | without cache, cand./s | with cache, cand./s | speed-up | "
          "passes resumed |\n|---|---:|---:|---:|---:|---:|\n";
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("incremental")) continue;
        const json& i = m["incremental"];
        md << "| " << name << " | " << i["children"] << " | "
           << fixed(i["without_cache"]["candidates_per_second"], 2) << " | "
           << fixed(i["with_cache"]["candidates_per_second"], 2) << " | "
           << fixed(i["speedup"], 2) << "x | " << i["with_cache"]["passes_resumed"] << " |\n";
    }
    return md.str();
}

std::string descent_table(const json& results) {
    std::ostringstream md;
    md << "\ngreedy_sensitivity's descent as `mpsearch search` runs it (the zoo config, the "
          "search's run loop and evaluator defaults, refinement off), validation split; seconds "
          "from the end of the batch before each descent batch to its end; min MACs/byte: the "
          "incremental cache's incremental_min_macs_per_byte:\n\n"
       << "| model | config | validation images | workers | min MACs/byte | phase 1 candidates "
          "| phase 1 cand./s | descent candidates | descent seconds | descent cand./s |\n"
       << "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n";
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("descent")) continue;
        const json& d = m["descent"];
        if (d.contains("skipped")) {
            md << "| " << name << " | skipped: " << d["skipped"].get<std::string>()
               << " | | | | | | | | |\n";
            continue;
        }
        const json phase1 = d["stages"].value("phase1", json::object());
        md << "| " << name << " | " << d["config"].get<std::string>() << " | "
           << d["validation_images"] << " | " << d["workers"] << " | "
           << d["incremental_min_macs_per_byte"] << " | "
           << phase1.value("candidates", 0) << " | "
           << figure(phase1.value("candidates_per_second", json(nullptr)), 2) << " | "
           << d["descent_candidates"] << " | " << figure(d["descent_seconds"], 2) << " | "
           << figure(d["descent_candidates_per_second"], 2) << " |\n";
    }
    return md.str();
}

std::string agreement_table(const json& results) {
    std::ostringstream md;
    md << "\nAgreement of the integer and fake-quant paths on the 10k test split (same calibration "
          "and weights; random = kernel-wise 2..8 bits, seeded):\n\n"
       << "| model | policy | top-1 agreement % | fake acc. % | int acc. % |\n"
       << "|---|---|---:|---:|---:|\n";
    for (const auto& [name, m] : results["models"].items()) {
        if (!m.contains("agreement")) continue;
        for (const json& a : m["agreement"])
            md << "| " << name << " | " << a["policy"].get<std::string>() << " | "
               << fixed(a["top1_agreement_percent"], 2) << " | " << fixed(a["fake_accuracy"], 2)
               << " | " << fixed(a["int_accuracy"], 2) << " |\n";
    }
    return md.str();
}

std::string markdown(const json& results) {
    std::string md = markdown_header(results, "Quantized evaluator benchmark");
    if (measured(results, "images")) md += images_table(results);
    if (measured(results, "candidates")) md += candidates_table(results);
    if (measured(results, "incremental")) md += incremental_table(results);
    if (measured(results, "descent")) md += descent_table(results);
    if (measured(results, "agreement")) md += agreement_table(results);
    return md;
}

struct Settings {
    std::string cases_path = "bench/cases/quantized.txt", out = "bench/results/quantized";
    std::string data_dir = mps::default_fashion_mnist_dir;
    std::string measure = "images,candidates,incremental,agreement";
    int runs = 5, candidates = 32, workers = 2;
    uint64_t seed = 1;
    PytorchOptions pytorch;
    DescentOptions descent;
};

po::options_description options_of(Settings& s) {
    po::options_description options("options");
    options.add_options()("help,h", "print this help")(
        "cases", po::value(&s.cases_path)->default_value(s.cases_path), "cases file")(
        "runs", po::value(&s.runs)->default_value(s.runs), "images/s runs per model (median)")(
        "candidates", po::value(&s.candidates)->default_value(s.candidates),
        "random policies per candidates/s measurement")(
        "seed", po::value(&s.seed)->default_value(s.seed), "seed of the random policies")(
        "incremental-workers", po::value(&s.workers)->default_value(s.workers),
        "workers of the incremental measurement")(
        "measure", po::value(&s.measure)->default_value(s.measure),
        "what to measure (comma-separated subset of images, candidates, incremental, agreement, "
        "descent)")(
        "pytorch", po::value(&s.pytorch.python)->default_value(s.pytorch.python),
        "Python with torch for the PyTorch fake-quant column of images")(
        "pytorch-script", po::value(&s.pytorch.script)->default_value(s.pytorch.script),
        "bench/pytorch_baseline.py")(
        "descent-configs", po::value(&s.descent.configs_dir)->default_value(s.descent.configs_dir),
        "directory of the zoo configs (<dir>/<architecture>/greedy_sensitivity.yaml)")(
        "descent-validation-images",
        po::value(&s.descent.validation_images)->default_value(s.descent.validation_images),
        "validation images of the descent run (0: the config's; smaller only for a smoke run)")(
        "descent-min-macs-per-byte",
        po::value(&s.descent.min_macs_per_byte)->default_value(s.descent.min_macs_per_byte),
        "the incremental cache's incremental_min_macs_per_byte in the descent run (-1: the "
        "evaluator's default)")(
        "data", po::value(&s.data_dir)->default_value(s.data_dir), "Fashion-MNIST directory")(
        "out", po::value(&s.out)->default_value(s.out), "output path without extension");
    return options;
}

json measure_case(const Case& c, const Settings& s, const mps::EvaluationData& data) {
    const mps::Graph graph = load_model(c.model);
    json m = {{"model", c.model}};
    auto wanted = [&](const std::string& what) {
        return s.measure.find(what) != std::string::npos;
    };
    if (wanted("images"))
        m["images"] = measure_images(graph, data, s.runs, architecture_of(c.model), s.pytorch);
    if (wanted("candidates"))
        m["candidates"] = measure_candidates(graph, data, s.candidates, s.seed);
    if (wanted("incremental")) m["incremental"] = measure_incremental(graph, data, s.workers);
    if (wanted("descent")) m["descent"] = measure_descent(c, s.descent);
    if (wanted("agreement")) m["agreement"] = measure_agreement(graph, data, 3, s.seed);
    return m;
}

} // namespace

int main(int argc, char** argv) {
    Settings settings;
    const po::options_description options = options_of(settings);
    try {
        po::variables_map values;
        if (!mps::cli::parse_options(argc, argv, options, values, std::cout)) return 0;
        mps::cli::require_positive(settings.runs, "runs");
        mps::cli::require_positive(settings.candidates, "candidates");
        mps::cli::require_positive(settings.workers, "incremental-workers");
        if (settings.descent.validation_images < 0)
            throw mps::Error("--descent-validation-images must be 0 (the config's) or positive");
        settings.descent.data_dir = settings.data_dir;
        json results = results_header(argc, argv, "mpsearch_bench_quantized");
        const mps::EvaluationData data = mps::load_evaluation_data(settings.data_dir);
        for (const Case& c : read_cases(settings.cases_path)) {
            const json m = measure_case(c, settings, data);
            std::printf("%-15s %s\n", c.name.c_str(), m.dump().c_str());
            std::fflush(stdout);
            results["models"][c.name] = m;
        }
        write_results(settings.out, results, markdown(results));
        std::printf("summary: %zu models measured; results in %s.{json,md}\n",
                    results["models"].size(), settings.out.c_str());
        return 0;
    } catch (const mps::Error& e) {
        std::cerr << "mpsearch_bench_quantized: " << e.what() << "\n";
        return 2;
    } catch (const YAML::Exception& e) {
        std::cerr << "mpsearch_bench_quantized: descent config: " << e.what() << "\n";
        return 2;
    } catch (const dnnl::error& e) {
        std::cerr << "mpsearch_bench_quantized: oneDNN: " << e.what() << "\n";
        return 2;
    }
}
