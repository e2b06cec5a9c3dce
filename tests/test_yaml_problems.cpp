// YamlProblems (evaluator/io/yaml_problems.h): problems collected with their positions and reported
// together in file order; a syntax error reported alone, inside the text.
#include "evaluator/io/yaml_problems.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace mps;

namespace {

// The problems `report` throws for `text` (empty when it throws nothing).
template <typename Report>
std::vector<YamlProblem> problems_of(const std::string& text, Report report) {
    YamlProblems problems("f.yaml", text);
    try {
        report(problems, problems.parse());
        problems.raise_if_any();
    } catch (const YamlError& e) {
        CHECK(e.file() == "f.yaml");
        return e.problems();
    }
    return {};
}

} // namespace

TEST_CASE("yaml_problems: every problem at its node's position, in file order") {
    const std::string text = "a: 1\n"        // 1
                             "b:\n"          // 2
                             "  c: [x, y]\n" // 3
                             "d: z\n";       // 4
    const auto problems = problems_of(text, [](YamlProblems& p, const YAML::Node& root) {
        p.add(root["d"], "d is wrong");                       // found first, reported last
        p.add(root["b"]["c"][1].Mark(), "b.c[1]", "y is wrong");
        p.add(root["b"]["c"][1].Mark(), "b.c[1]", "and so is this"); // same place: found order
        p.add(root["a"], "a is wrong");
    });
    REQUIRE(problems.size() == 4);
    CHECK(problems[0].message == "a is wrong");
    CHECK(problems[0].line == 1);
    CHECK(problems[0].column == 4);
    CHECK(problems[1].message == "y is wrong");
    CHECK(problems[1].key_path == "b.c[1]");
    CHECK(problems[1].line == 3);
    CHECK(problems[1].column == 10);
    CHECK(problems[2].message == "and so is this");
    CHECK(problems[3].line == 4);
    CHECK(problems[3].column == 4);

    try {
        YamlProblems p("f.yaml", text);
        const YAML::Node root = p.parse();
        p.add(root["b"]["c"][0].Mark(), "b.c[0]", "x is wrong; use w");
        p.add(root["a"], "a is wrong");
        p.add(YAML::Mark::null_mark(), "", "the whole file is wrong");
        p.raise();
    } catch (const YamlError& e) {
        // No position: the file alone, first; no key path: left out.
        CHECK(std::string(e.what()) == "f.yaml: the whole file is wrong\n"
                                       "f.yaml:1:4: a is wrong\n"
                                       "f.yaml:3:7: b.c[0]: x is wrong; use w");
    }
}

TEST_CASE("yaml_problems: nothing to report throws nothing; a syntax error is reported alone") {
    CHECK(problems_of("a: 1\n", [](YamlProblems&, const YAML::Node&) {}).empty());

    // A bracket left open: the parser sees the end a line after the last one; it is reported at
    // the end of the last line, where an editor shows it.
    const auto unclosed = problems_of("a: 1\nb: [1, 2\n", [](YamlProblems&, const YAML::Node&) {
        FAIL("a malformed file parsed");
    });
    REQUIRE(unclosed.size() == 1);
    CHECK(unclosed[0].message.rfind("malformed YAML: ", 0) == 0);
    CHECK(unclosed[0].line == 2);
    CHECK(unclosed[0].column == 9);
}

TEST_CASE("yaml_problems: bounded; the first problems listed and the rest counted") {
    std::string text;
    for (int i = 0; i < 120; ++i) text += "k" + std::to_string(i) + ": 1\n";
    YamlProblems problems("f.yaml", text);
    const YAML::Node root = problems.parse();
    for (const auto& entry : root) problems.add(entry.first, "unknown key");
    try {
        problems.raise();
    } catch (const YamlError& e) {
        CHECK(e.problems().size() == max_yaml_problems);
        CHECK(e.more() == 120 - max_yaml_problems);
        CHECK(std::string(e.what()).find("f.yaml: and 70 more problems (the first 50 are listed)") !=
              std::string::npos);
    }
}

TEST_CASE("yaml_problems: a file too large or holding a NUL byte is refused before parsing") {
    const std::vector<YamlProblem> big =
        problems_of(std::string(max_yaml_bytes + 1, '#'), [](YamlProblems&, const YAML::Node&) {});
    REQUIRE(big.size() == 1);
    CHECK(big[0].message.find("more than the 1 MiB") != std::string::npos);

    const std::vector<YamlProblem> binary =
        problems_of(std::string("model: x\nab\0cd: 1\n", 18), [](YamlProblems&, const YAML::Node&) {});
    REQUIRE(binary.size() == 1);
    CHECK(binary[0].line == 2);
    CHECK(binary[0].column == 3);
    CHECK(binary[0].message.find("a NUL byte") != std::string::npos);
}
