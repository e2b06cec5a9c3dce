// Collecting and reporting the problems of a YAML file (yaml_problems.h).
#include "evaluator/io/yaml_problems.h"

#include <algorithm>
#include <fstream>
#include <utility>

namespace mps {

namespace {

std::string describe(const std::string& file, const std::vector<YamlProblem>& problems,
                     size_t more) {
    std::string text;
    for (const YamlProblem& p : problems) {
        if (!text.empty()) text += '\n';
        text += file;
        if (p.line > 0) text += ":" + std::to_string(p.line) + ":" + std::to_string(p.column);
        text += ": ";
        if (!p.key_path.empty()) text += p.key_path + ": ";
        text += p.message;
    }
    if (more > 0)
        text += "\n" + file + ": and " + std::to_string(more) + " more problem" +
                (more == 1 ? "" : "s") + " (the first " + std::to_string(problems.size()) +
                " are listed); fix these and run again";
    return text;
}

// `size`: bytes of the file, or 0 when only "more than the bound" is known.
std::string too_large(size_t size) {
    return "the file is " + (size ? std::to_string(size) : "more than " + std::to_string(max_yaml_bytes)) +
           " bytes, more than the " + std::to_string(max_yaml_bytes >> 20) +
           " MiB a YAML input of mpsearch may have (real ones are a few KiB); check that this is "
           "the right file";
}

} // namespace

std::string read_yaml_file(const std::string& path, const std::string& what) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot open the " + what + "; check the path");
    std::string text(max_yaml_bytes + 1, '\0');
    in.read(text.data(), static_cast<std::streamsize>(text.size()));
    if (in.bad()) throw Error(path + ": cannot read the " + what);
    text.resize(static_cast<size_t>(in.gcount()));
    if (text.size() > max_yaml_bytes) throw YamlError(path, {YamlProblem{0, 0, "", too_large(0)}});
    return text;
}

YamlError::YamlError(std::string file, std::vector<YamlProblem> problems, size_t more)
    : Error(describe(file, problems, more)),
      file_(std::move(file)),
      problems_(std::move(problems)),
      more_(more) {}

YamlProblems::YamlProblems(std::string file, std::string text)
    : file_(std::move(file)), text_(std::move(text)) {}

YAML::Node YamlProblems::parse() {
    if (text_.size() > max_yaml_bytes) {
        add(YAML::Mark::null_mark(), "", too_large(text_.size()));
        raise();
    }
    if (const size_t nul = text_.find('\0'); nul != std::string::npos) {
        YAML::Mark mark;
        mark.line = static_cast<int>(std::count(text_.begin(), text_.begin() + nul, '\n'));
        const size_t line_start = text_.rfind('\n', nul);
        mark.column = static_cast<int>(nul - (line_start == std::string::npos ? 0 : line_start + 1));
        add(mark, "", "a NUL byte: the file holds binary data, not YAML text; check that this is "
                      "the right file");
        raise();
    }
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
    if (problems_.size() >= max_yaml_problems) {
        ++more_;
        return;
    }
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
    throw YamlError(file_, std::move(problems_), more_);
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
