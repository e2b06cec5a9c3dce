#pragma once
// Command-line parsing shared by the subcommands: Boost.Program_options with errors turned into
// one mps::Error that names the command and points at --help.
#include <boost/program_options.hpp>

#include <iosfwd>
#include <string>

namespace mps::cli {

namespace po = boost::program_options;

// Parses argv (argv[0] is the subcommand name) against `options`. Returns false when --help was
// asked for (the help text is then printed to `out`); throws mps::Error on unknown flags, missing
// values or bad types.
bool parse_options(int argc, char** argv, const po::options_description& options,
                   po::variables_map& values, std::ostream& out);

// Throws mps::Error unless `value` is positive; `flag` names the option in the message.
void require_positive(long long value, const std::string& flag);

// The most images --batch may put through one forward pass. Memory grows with the batch (every
// layer's activations for all of its images: `eval --batch 100000` took 5.1 GB, issue 22)
// while throughput gains nothing from it at that size.
inline constexpr long long max_batch = 4096;

// Throws mps::Error unless 1 <= value <= max_batch, saying why the bound is there.
void require_batch(long long value);

// The learned codes of a data-aware quantizer (adaround) beside a policy file: `learned_codes/` in
// the file's directory (a search's run directory holds both) when it exists, else "" (learned
// again, in memory).
std::string learned_codes_beside(const std::string& policy_path);

} // namespace mps::cli
