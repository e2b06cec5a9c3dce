// The progress output (search/progress.h): in a log a line at the first update, at stage changes,
// every log interval of the run's elapsed time (the state's clock, set here) and at the end; on
// a terminal one line rewritten at every update; nothing when quiet.
#include "search/progress.h"

#include <doctest/doctest.h>

#include <sstream>
#include <string>
#include <vector>

using namespace mps;

namespace {

ProgressState at(double seconds, const std::string& stage, int64_t evaluations) {
    ProgressState s;
    s.evaluations = evaluations;
    s.max_evaluations = 100;
    s.elapsed_seconds = seconds;
    s.stage = stage;
    return s;
}

std::vector<std::string> lines_of(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) lines.push_back(line);
    return lines;
}

// The evaluation counts of the lines printed ("evaluations 12/100 | ..." -> 12).
std::vector<int> counts_of(const std::string& text) {
    std::vector<int> counts;
    for (const std::string& line : lines_of(text))
        counts.push_back(std::stoi(line.substr(line.find(' ') + 1)));
    return counts;
}

} // namespace

TEST_CASE("progress in a log: first update, every interval, stage changes and the end") {
    std::ostringstream out;
    Progress progress(out, false, false, 5.0);
    // one update a second; stage "descent" from 7 s; the run ends at 13 s
    for (int t = 0; t <= 13; ++t) progress.update(at(t, t < 7 ? "phase1" : "descent", t + 1));
    CHECK(counts_of(out.str()) == std::vector<int>{1, 6, 8, 13});
    progress.finish();
    CHECK(counts_of(out.str()) == std::vector<int>{1, 6, 8, 13, 14});
    progress.finish(); // nothing left to show
    CHECK(counts_of(out.str()).size() == 5);
}

TEST_CASE("progress in a log: the last update is not printed twice") {
    std::ostringstream out;
    Progress progress(out, false, false, 5.0);
    progress.update(at(0, "a", 1));
    progress.update(at(6, "a", 2));
    progress.finish();
    CHECK(counts_of(out.str()) == std::vector<int>{1, 2});
}

TEST_CASE("progress in a log: a message is its own line and keeps the throttle") {
    std::ostringstream out;
    Progress progress(out, false, false, 5.0);
    progress.update(at(0, "a", 1));
    progress.update(at(1, "a", 2));
    progress.message("warning: x");
    progress.update(at(2, "a", 3));
    progress.finish();
    const std::vector<std::string> lines = lines_of(out.str());
    REQUIRE(lines.size() == 3);
    CHECK(lines[0].starts_with("evaluations 1/100"));
    CHECK(lines[1] == "warning: x");
    CHECK(lines[2].starts_with("evaluations 3/100"));
}

TEST_CASE("progress on a terminal: one line rewritten at every update") {
    std::ostringstream out;
    Progress progress(out, true, false, 5.0);
    for (int t = 0; t < 3; ++t) progress.update(at(0.1 * t, "a", t + 1));
    progress.finish();
    const std::string text = out.str();
    CHECK(text.find("\r\033[Kevaluations 3/100") != std::string::npos);
    size_t rewrites = 0;
    for (size_t p = text.find('\r'); p != std::string::npos; p = text.find('\r', p + 1)) ++rewrites;
    CHECK(rewrites == 3);
    CHECK(lines_of(text).size() == 1);
    CHECK(text.back() == '\n');
}

TEST_CASE("progress: quiet prints nothing") {
    std::ostringstream out;
    Progress progress(out, false, true, 5.0);
    progress.update(at(0, "a", 1));
    progress.message("hello");
    progress.finish();
    CHECK(out.str().empty());
}
