#pragma once
// YamlProblems: what is wrong with a YAML file, collected while one pass reads all of it and
// reported at once, so that a user fixes every mistake in one round instead of one per run. The
// run config and policy file readers both use it; their messages have one form:
//
//   <file>:<line>:<column>: <key.path>: <problem>; <fix>
//
// one problem per line, in file order (problems at the same place in the order found). Line and
// column are 1-based, from yaml-cpp's Mark of the offending key or value; a problem without a
// position (a null Mark) prints as "<file>: ...", and one without a key path leaves it out.
//
// A syntax error is the one problem of its file (nothing after it can be read): parse() throws
// it at once, moved to the end of the last line when the parser reports it past the end. So are
// a file larger than max_yaml_bytes and one holding a NUL byte (binary data, which would also cut
// a message quoting it short): neither is parsed, so a wrong file costs neither memory nor time.
//
// Checking is bounded: the first max_yaml_problems problems found are kept and reported, the
// rest only counted ("and N more problems"), so a huge broken file gives a message one can read.
#include "evaluator/base/error.h"

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace mps {

inline constexpr size_t max_yaml_bytes = size_t{1} << 20; // real configs are a few KiB
inline constexpr size_t max_yaml_problems = 50;

struct YamlProblem {
    int line = 0, column = 0; // 1-based; 0 when unknown
    std::string key_path;     // "constraints.max_relative_bitops", "bits.weights[2]"; may be empty
    std::string message;      // problem and fix
};

// Every problem of one file, in file order; what() is all of them, one per line (form above).
class YamlError : public Error {
public:
    // `more`: problems found beyond those listed (counted, not kept).
    YamlError(std::string file, std::vector<YamlProblem> problems, size_t more = 0);
    const std::vector<YamlProblem>& problems() const { return problems_; }
    const std::string& file() const { return file_; }
    size_t more() const { return more_; }

private:
    std::string file_;
    std::vector<YamlProblem> problems_;
    size_t more_ = 0;
};

// The text of the YAML file `path` (`what` names it in messages: "run configuration"). Reads at
// most max_yaml_bytes + 1 bytes, so a huge file costs no memory: a larger one is a YamlError
// saying so; a file that cannot be opened or read is an mps::Error naming it.
std::string read_yaml_file(const std::string& path, const std::string& what);

class YamlProblems {
public:
    // `file` names the file in messages; `text` is all of it.
    YamlProblems(std::string file, std::string text);

    // The document of the text; a syntax error, a text over max_yaml_bytes or one with a NUL
    // byte throws YamlError with that one problem.
    YAML::Node parse();

    void add(const YAML::Mark& mark, const std::string& key_path, const std::string& message);
    void add(const YAML::Node& node, const std::string& message) { add(node.Mark(), "", message); }
    bool empty() const { return problems_.empty() && more_ == 0; }

    // Throws YamlError with every problem added so far.
    [[noreturn]] void raise();
    void raise_if_any() {
        if (!empty()) raise();
    }

private:
    YAML::Mark within_text(YAML::Mark mark) const;

    std::string file_;
    std::string text_;
    std::vector<YamlProblem> problems_;
    size_t more_ = 0; // found beyond max_yaml_problems
};

} // namespace mps
