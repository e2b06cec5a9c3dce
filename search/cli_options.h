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

} // namespace mps::cli
