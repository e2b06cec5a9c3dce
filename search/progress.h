#pragma once
// Progress of a long run on stderr: on a terminal one line rewritten in place at every update;
// otherwise (a log file, CI) a line now and then, so that a log stays short: at the first update,
// when the stage changes, when log_interval seconds passed since the last line, and at finish()
// (the last state). The clock is the state's elapsed_seconds, so the choice is a function of the
// updates alone (and testable). Silent when quiet.
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
    std::string stage;                          // the stage of the last batch (Proposal::stage)
};

class Progress {
public:
    static constexpr double default_log_interval = 5.0; // seconds between lines in a log

    // `terminal`: rewrite one line (true when `out` is an interactive terminal).
    Progress(std::ostream& out, bool terminal, bool quiet,
             double log_interval = default_log_interval);
    void update(const ProgressState& state);
    // The end of the progress: prints the last state if a log has not shown it yet and ends the
    // in-place line, so that later output starts on a new line.
    void finish();
    // A message on its own line (the in-place line is redrawn by the next update).
    void message(const std::string& text);

    // "1:05:09" / "4:02" from seconds.
    static std::string clock_text(double seconds);
    // The line for `state`, without a newline.
    static std::string line(const ProgressState& state);

private:
    bool log_line_due(const ProgressState& state) const;
    void end_line();

    std::ostream& out_;
    bool terminal_, quiet_;
    double log_interval_;
    bool open_line_ = false;
    std::optional<ProgressState> last_logged_; // the state of the last line in a log
    std::optional<ProgressState> pending_;     // a later state a log has not shown yet
};

} // namespace mps
