#include "search/cli_options.h"

#include "evaluator/base/error.h"

#include "evaluator/engine/evaluator.h"

#include <filesystem>
#include <ostream>

namespace mps::cli {

bool parse_options(int argc, char** argv, const po::options_description& options,
                   po::variables_map& values, std::ostream& out) {
    const std::string command = argc > 0 ? argv[0] : "mpsearch";
    try {
        po::store(po::command_line_parser(argc, argv).options(options).run(), values);
        if (values.count("help")) {
            out << "usage: mpsearch " << command << " [options]\n" << options;
            return false;
        }
        po::notify(values);
    } catch (const po::error& e) {
        throw Error(std::string(e.what()) + " (see 'mpsearch " + command + " --help')");
    }
    return true;
}

void require_positive(long long value, const std::string& flag) {
    if (value <= 0)
        throw Error("--" + flag + " must be positive, got " + std::to_string(value));
}

void require_batch(long long value) {
    require_positive(value, "batch");
    if (value > max_batch)
        throw Error("--batch " + std::to_string(value) + " is more than " +
                    std::to_string(max_batch) +
                    " images per pass: memory grows with the batch while speed does not; use at "
                    "most " + std::to_string(max_batch) + " (the default is fine)");
}

std::string learned_codes_beside(const std::string& policy_path) {
    const std::filesystem::path dir =
        std::filesystem::path(policy_path).parent_path() / learned_codes_dir_name;
    std::error_code error;
    return std::filesystem::is_directory(dir, error) ? dir.string() : std::string();
}

} // namespace mps::cli
