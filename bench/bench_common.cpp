#include "bench/bench_common.h"

#include "bench/machine.h"
#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

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

} // namespace mps::bench
