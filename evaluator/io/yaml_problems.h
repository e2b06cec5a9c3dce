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
// it at once, moved to the end of the last line when the parser reports it past the end.
#include "evaluator/base/error.h"

#include <yaml-cpp/yaml.h>

#include <string>
#include <vector>

namespace mps {

struct YamlProblem {
    int line = 0, column = 0; // 1-based; 0 when unknown
    std::string key_path;     // "constraints.max_relative_bitops", "bits.weights[2]"; may be empty
    std::string message;      // problem and fix
};

// Every problem of one file, in file order; what() is all of them, one per line (form above).
class YamlError : public Error {
public:
    YamlError(std::string file, std::vector<YamlProblem> problems);
    const std::vector<YamlProblem>& problems() const { return problems_; }
    const std::string& file() const { return file_; }

private:
    std::string file_;
    std::vector<YamlProblem> problems_;
};

class YamlProblems {
public:
    // `file` names the file in messages; `text` is all of it.
    YamlProblems(std::string file, std::string text);

    // The document of the text; a syntax error throws YamlError with that one problem.
    YAML::Node parse();

    void add(const YAML::Mark& mark, const std::string& key_path, const std::string& message);
    void add(const YAML::Node& node, const std::string& message) { add(node.Mark(), "", message); }
    bool empty() const { return problems_.empty(); }

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
};

} // namespace mps
