// Collecting and reporting the problems of a YAML file (yaml_problems.h).
#include "evaluator/io/yaml_problems.h"

#include <algorithm>
#include <utility>

namespace mps {

namespace {

std::string describe(const std::string& file, const std::vector<YamlProblem>& problems) {
    std::string text;
    for (const YamlProblem& p : problems) {
        if (!text.empty()) text += '\n';
        text += file;
        if (p.line > 0) text += ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
        text += ": ";
        if (!p.key_path.empty()) text += p.key_path + ": ";
        text += p.message;
    }
    return text;
}

} // namespace

YamlError::YamlError(std::string file, std::vector<YamlProblem> problems)
    : Error(describe(file, problems)), file_(std::move(file)), problems_(std::move(problems)) {}

YamlProblems::YamlProblems(std::string file, std::string text)
    : file_(std::move(file)), text_(std::move(text)) {}

YAML::Node YamlProblems::parse() {
    try {
        return YAML::Load(text_);
    } catch (const YAML::Exception& e) {
        add(within_text(e.mark), "",
            "malformed YAML: " + e.msg +
                "; fix the syntax (indentation, brackets, a ':' after each key)");
        raise();
    }
}

void YamlProblems::add(const YAML::Mark& mark, const std::string& key_path,
                       const std::string& message) {
    YamlProblem p;
    if (!mark.is_null()) {
        p.line = mark.line + 1;
        p.column = mark.column + 1;
    }
    p.key_path = key_path;
    p.message = message;
    problems_.push_back(std::move(p));
}

void YamlProblems::raise() {
    // File order; problems at the same place keep the order they were found in.
    std::stable_sort(problems_.begin(), problems_.end(),
                     [](const YamlProblem& a, const YamlProblem& b) {
                         return std::pair(a.line, a.column) < std::pair(b.line, b.column);
                     });
    throw YamlError(file_, std::move(problems_));
}

// The parser reports a file that ends too early (an unclosed bracket or quote) at the end of
// the text, a line after the last one when the file ends with a newline; the end of the last
// line is where an editor shows it.
YAML::Mark YamlProblems::within_text(YAML::Mark mark) const {
    const int lines = static_cast<int>(std::count(text_.begin(), text_.end(), '\n')) +
                      (text_.empty() || text_.back() == '\n' ? 0 : 1);
    if (mark.is_null() || lines == 0 || mark.line < lines) return mark;
    const size_t end = text_.back() == '\n' ? text_.size() - 1 : text_.size();
    const size_t start = text_.rfind('\n', end == 0 ? 0 : end - 1);
    mark.line = lines - 1;
    mark.column = static_cast<int>(end - (start == std::string::npos ? 0 : start + 1));
    return mark;
}

} // namespace mps
