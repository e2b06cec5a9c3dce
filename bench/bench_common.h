#pragma once
// What every benchmark driver shares: its cases file, its statistics, its outputs, and the
// timing of oneDNN primitives alone (mpsearch_bench_peak's kernels and the per-layer int8 bound
// that both it and mpsearch_bench_quantized report).
#include "evaluator/engine/evaluate.h"
#include "evaluator/ir/graph.h"

#include <nlohmann/json.hpp>
#include <oneapi/dnnl/dnnl.hpp>

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace mps::bench {

// One line of a cases file: "<name> <model>" ('#' starts a comment line).
struct Case {
    std::string name;
    std::string model;
};
// Throws mps::Error naming the file and line of a malformed case.
std::vector<Case> read_cases(const std::string& path);

double median(std::vector<double> values);
double seconds_since(std::chrono::steady_clock::time_point start);
std::string fixed(double value, int digits); // "%.*f"

// The JSON every result file starts with: machine, date and the command line that made it.
nlohmann::json results_header(int argc, char** argv, const std::string& program);
// "# <title>" and the command / machine / date lines of `results`, for the Markdown report.
std::string markdown_header(const nlohmann::json& results, const std::string& title);

// Writes <out>.json and <out>.md, each to a temporary name first and then renamed.
void write_results(const std::string& out, const nlohmann::json& results,
                   const std::string& markdown);

// --- oneDNN primitives timed alone ----------------------------------------------------------

constexpr double min_run_seconds = 0.05; // a timed run repeats the kernel at least this long
// The integer path's images per oneDNN primitive call: its pass size (evaluate.h).
constexpr int64_t layer_batch = mps::default_pass_images;

struct Timing {
    double gmacs = 0.0;          // median over the runs
    std::vector<double> runs;    // GMAC/s of each run
    int64_t repetitions = 0;     // executions per run
};

// `pd`'s primitive on freshly allocated, filled src / weights / dst buffers: one warm-up
// execution (excluded), one to size a run to at least min_run_seconds, then `runs` timed runs of
// that many execute()+wait() calls.
Timing time_primitive(const dnnl::primitive_desc& pd, double macs, int runs,
                      const dnnl::engine& engine);

// One quantizable layer of `graph` as a standalone int8 primitive at `batch` images (u8 src, s8
// weights, f32 dst with per-kernel output scales, as the integer path runs it), timed with
// time_primitive: {layer, op, macs_per_image, gmacs, seconds_per_batch, repetitions, impl}.
nlohmann::json time_int8_layer(const mps::Graph& graph, const mps::Node& node, int64_t batch,
                               int runs, const dnnl::engine& engine);

// Every conv / fully connected layer of `graph` timed alone by time_int8_layer at layer_batch
// images with `threads` OpenMP threads (the caller's thread count is restored afterwards), and
// the upper bound on images/s their summed times allow:
// {layers_threads, layers_batch, layers, bound_images_per_second_int8_layers}.
nlohmann::json int8_layer_bound(const mps::Graph& graph, int threads, int runs,
                                const dnnl::engine& engine);

} // namespace mps::bench
