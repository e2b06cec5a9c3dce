#pragma once
// What every benchmark driver shares: its cases file, its statistics and its outputs.
#include <nlohmann/json.hpp>

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
std::string fixed(double value, int digits); // "%.*f"

// The JSON every result file starts with: machine, date and the command line that made it.
nlohmann::json results_header(int argc, char** argv, const std::string& program);
// "# <title>" and the command / machine / date lines of `results`, for the Markdown report.
std::string markdown_header(const nlohmann::json& results, const std::string& title);

// Writes <out>.json and <out>.md, each to a temporary name first and then renamed.
void write_results(const std::string& out, const nlohmann::json& results,
                   const std::string& markdown);

} // namespace mps::bench
