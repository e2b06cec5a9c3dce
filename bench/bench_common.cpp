#include "bench/bench_common.h"

#include "bench/machine.h"
#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"

#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <unordered_map>

namespace mps::bench {

std::vector<Case> read_cases(const std::string& path) {
    std::ifstream in(path);
    if (!in) throw Error(path + ": cannot open cases file");
    std::vector<Case> cases;
    int line_number = 0;
    for (std::string line; std::getline(in, line);) {
        ++line_number;
        if (line.empty() || line[0] == '#') continue;
        std::istringstream fields(line);
        Case c;
        if (!(fields >> c.name >> c.model))
            throw Error(path + ":" + std::to_string(line_number) +
                        ": expected '<name> <model.onnx | zoo:architecture>'");
        cases.push_back(c);
    }
    return cases;
}

double median(std::vector<double> values) {
    std::sort(values.begin(), values.end());
    const size_t n = values.size();
    return n % 2 ? values[n / 2] : 0.5 * (values[n / 2 - 1] + values[n / 2]);
}

double seconds_since(std::chrono::steady_clock::time_point start) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

std::string fixed(double value, int digits) {
    char text[64];
    std::snprintf(text, sizeof text, "%.*f", digits, value);
    return text;
}

nlohmann::json results_header(int argc, char** argv, const std::string& program) {
    std::string command = "build/bench/" + program;
    for (int i = 1; i < argc; ++i) { // quoted where a shell would split it, so it can be re-run
        const std::string arg = argv[i];
        const bool plain = arg.find_first_of(" \t'\"$`\\;&|<>(){}*?") == std::string::npos;
        command += plain ? " " + arg : " '" + arg + "'";
    }
    return {{"machine", describe_machine()}, {"date", utc_timestamp()}, {"command", command}};
}

std::string markdown_header(const nlohmann::json& results, const std::string& title) {
    std::ostringstream md;
    md << "# " << title << "\n\n"
       << "Command: `" << results["command"].get<std::string>() << "`  \n"
       << "Machine: " << results["machine"]["cpu"].get<std::string>() << ", "
       << results["machine"]["hardware_threads"] << " threads, oneDNN "
       << results["machine"]["onednn"].get<std::string>() << " ("
       << results["machine"].value("onednn_isa", std::string("isa not recorded")) << ")  \nDate: "
       << results["date"].get<std::string>() << "\n\n";
    return md.str();
}

void write_results(const std::string& out, const nlohmann::json& results,
                   const std::string& markdown) {
    write_file_atomically(out + ".json", results.dump(2) + "\n");
    write_file_atomically(out + ".md", markdown);
}

// --- oneDNN primitives timed alone ----------------------------------------------------------

namespace {

using dnnl::memory;
using dt = memory::data_type;
using tag = memory::format_tag;
using Clock = std::chrono::steady_clock;

// Deterministic, value-independent filling: every byte of an integer buffer and every float of
// a float buffer (padding and compensation areas of blocked layouts included) gets a small
// finite value, so no denormals or NaNs slow a kernel down.
void fill(memory& mem) {
    const size_t bytes = mem.get_desc().get_size();
    auto* data = static_cast<uint8_t*>(mem.get_data_handle());
    uint32_t state = 12345;
    auto next = [&] { return state = state * 1664525u + 1013904223u; };
    if (mem.get_desc().data_type() == dt::f32) {
        auto* values = reinterpret_cast<float*>(data);
        for (size_t i = 0; i < bytes / sizeof(float); ++i)
            values[i] = static_cast<float>(next() >> 16) / 65536.0f - 0.5f;
    } else {
        for (size_t i = 0; i < bytes; ++i) data[i] = static_cast<uint8_t>((next() >> 24) & 0x0f);
    }
}

// The int8 primitive of a conv or fully connected node at `batch` images. Layouts are left to
// oneDNN: 2.6 has int8 convs on nhwc only here (offered u8 nchw or nChw16c sources for the zoo's
// layers, it had its reference kernel or none).
dnnl::primitive_desc int8_layer_primitive(const mps::Graph& graph, const mps::Node& node,
                                          int64_t batch, const dnnl::engine& engine) {
    const auto with_batch = [&](const std::string& value) {
        memory::dims dims = {batch};
        for (const int64_t d : graph.shapes.at(value)) dims.push_back(d);
        return dims;
    };
    const memory::desc src(with_batch(node.inputs[0]), dt::u8, tag::any),
        dst(with_batch(node.output), dt::f32, tag::any);
    const auto& w = node.weight.dims;
    dnnl::primitive_attr attr;
    attr.set_output_scales(1 << 1, std::vector<float>(static_cast<size_t>(w[0]), 0.01f));
    if (node.op == mps::Op::conv) {
        const int64_t g = node.groups;
        const memory::desc wei(g == 1 ? memory::dims{w[0], w[1], w[2], w[3]}
                                      : memory::dims{g, w[0] / g, w[1], w[2], w[3]},
                               dt::s8, tag::any);
        const dnnl::convolution_forward::desc desc(
            dnnl::prop_kind::forward_inference, dnnl::algorithm::convolution_direct, src, wei, dst,
            {node.stride[0], node.stride[1]}, {node.dilation[0] - 1, node.dilation[1] - 1},
            {node.pad_begin[0], node.pad_begin[1]}, {node.pad_end[0], node.pad_end[1]});
        return dnnl::convolution_forward::primitive_desc(desc, attr, engine);
    }
    const dnnl::inner_product_forward::desc desc(
        dnnl::prop_kind::forward_inference, src, memory::desc({w[0], w[1]}, dt::s8, tag::any), dst);
    return dnnl::inner_product_forward::primitive_desc(desc, attr, engine);
}

} // namespace

Timing time_primitive(const dnnl::primitive_desc& pd, double macs, int runs,
                      const dnnl::engine& engine) {
    std::unordered_map<int, memory> args;
    for (const auto& [arg, desc] : {std::pair{DNNL_ARG_SRC, pd.src_desc()},
                                    std::pair{DNNL_ARG_WEIGHTS, pd.weights_desc()},
                                    std::pair{DNNL_ARG_DST, pd.dst_desc()}}) {
        args.emplace(arg, memory(desc, engine));
        fill(args.at(arg));
    }
    const memory::desc scratch = pd.scratchpad_desc();
    if (scratch.get_size() > 0) args.emplace(DNNL_ARG_SCRATCHPAD, memory(scratch, engine));
    const dnnl::primitive primitive(pd);
    dnnl::stream stream(engine);
    auto execute = [&] {
        primitive.execute(stream, args);
        stream.wait();
    };
    execute(); // warm-up, excluded: it creates scratchpads and touches the pages
    Clock::time_point start = Clock::now();
    execute();
    const double once = seconds_since(start);
    Timing timing;
    timing.repetitions =
        std::max<int64_t>(1, static_cast<int64_t>(std::ceil(min_run_seconds / once)));
    for (int r = 0; r < runs; ++r) {
        start = Clock::now();
        for (int64_t i = 0; i < timing.repetitions; ++i) execute();
        const double seconds = seconds_since(start);
        timing.runs.push_back(macs * static_cast<double>(timing.repetitions) / seconds / 1e9);
    }
    timing.gmacs = median(timing.runs);
    return timing;
}

// Only the MACs are timed: no quantization, reorders, pooling or adds.
nlohmann::json time_int8_layer(const mps::Graph& graph, const mps::Node& node, int64_t batch,
                               int runs, const dnnl::engine& engine) {
    const dnnl::primitive_desc pd = int8_layer_primitive(graph, node, batch, engine);
    const double macs =
        static_cast<double>(batch) * static_cast<double>(mps::node_macs(graph, node));
    const Timing t = time_primitive(pd, macs, runs, engine);
    return {{"layer", node.name},
            {"op", mps::op_name(node.op)},
            {"macs_per_image", mps::node_macs(graph, node)},
            {"gmacs", t.gmacs},
            {"seconds_per_batch", macs / (t.gmacs * 1e9)},
            {"repetitions", t.repetitions},
            {"impl", pd.impl_info_str()}};
}

nlohmann::json int8_layer_bound(const mps::Graph& graph, int threads, int runs,
                                const dnnl::engine& engine) {
    // oneDNN partitions a primitive's work for the thread count it sees when it is created.
    const int callers_threads = omp_get_max_threads();
    omp_set_num_threads(threads);
    nlohmann::json layers = nlohmann::json::array();
    double seconds_per_batch = 0.0;
    for (const mps::Node& node : graph.nodes) {
        if (!mps::is_quantizable(node)) continue;
        layers.push_back(time_int8_layer(graph, node, layer_batch, runs, engine));
        seconds_per_batch += layers.back()["seconds_per_batch"].get<double>();
    }
    omp_set_num_threads(callers_threads);
    return {{"layers_threads", threads},
            {"layers_batch", layer_batch},
            {"layers", layers},
            {"bound_images_per_second_int8_layers",
             static_cast<double>(layer_batch) / seconds_per_batch}};
}

} // namespace mps::bench
