#pragma once
// Progress of a long run on stderr: on a terminal one line rewritten in place, otherwise (a log
// file, CI) one line per update. Silent when quiet.
#include <chrono>
#include <iosfwd>
#include <optional>
#include <string>

namespace mps {

struct ProgressState {
    int64_t evaluations = 0;
    int64_t max_evaluations = 0;
    std::optional<double> max_seconds;
    std::optional<double> best_accuracy;        // best feasible validation accuracy so far
    std::optional<double> best_relative_bitops; // its relative BitOPs
    double elapsed_seconds = 0.0;
    std::string status;                         // the policy's status()
};

class Progress {
public:
    // `terminal`: rewrite one line (true when `out` is an interactive terminal).
    Progress(std::ostream& out, bool terminal, bool quiet);
    void update(const ProgressState& state);
    // Ends the in-place line (if any) so later output starts on a new line.
    void finish();
    // A message on its own line (the in-place line is redrawn by the next update).
    void message(const std::string& text);

    // "1:05:09" / "4:02" from seconds.
    static std::string clock_text(double seconds);
    // The line for `state`, without a newline.
    static std::string line(const ProgressState& state);

private:
    std::ostream& out_;
    bool terminal_, quiet_;
    bool open_line_ = false;
};

} // namespace mps
