#include "search/progress.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <ostream>
#include <utility>

namespace mps {

Progress::Progress(std::ostream& out, bool terminal, bool quiet, double log_interval)
    : out_(out), terminal_(terminal), quiet_(quiet), log_interval_(log_interval) {}

std::string Progress::clock_text(double seconds) {
    const long total = std::lround(std::max(0.0, seconds));
    char text[32];
    if (total >= 3600)
        std::snprintf(text, sizeof text, "%ld:%02ld:%02ld", total / 3600, total / 60 % 60, total % 60);
    else
        std::snprintf(text, sizeof text, "%ld:%02ld", total / 60, total % 60);
    return text;
}

std::string Progress::line(const ProgressState& s) {
    char text[256];
    std::string out;
    std::snprintf(text, sizeof text, "evaluations %lld/%lld", static_cast<long long>(s.evaluations),
                  static_cast<long long>(s.max_evaluations));
    out += text;
    if (s.best_accuracy && s.best_relative_bitops) {
        std::snprintf(text, sizeof text, " | best feasible %.2f %% at %.4f rel. BitOPs",
                      *s.best_accuracy, *s.best_relative_bitops);
        out += text;
    } else {
        out += " | no feasible point yet";
    }
    out += " | " + clock_text(s.elapsed_seconds) + " elapsed";
    // ETA from the evaluation rate, capped by the time budget.
    if (s.evaluations > 0) {
        double eta = s.elapsed_seconds / static_cast<double>(s.evaluations) *
                     static_cast<double>(s.max_evaluations - s.evaluations);
        if (s.max_seconds) eta = std::min(eta, *s.max_seconds - s.elapsed_seconds);
        out += ", ETA " + clock_text(eta) + " (at most)";
    }
    if (!s.status.empty()) out += " | " + s.status;
    return out;
}

bool Progress::log_line_due(const ProgressState& state) const {
    return !last_logged_ || state.stage != last_logged_->stage ||
           state.elapsed_seconds - last_logged_->elapsed_seconds >= log_interval_;
}

void Progress::update(const ProgressState& state) {
    if (quiet_) return;
    if (terminal_) {
        out_ << "\r\033[K" << line(state) << std::flush;
        open_line_ = true;
    } else if (log_line_due(state)) {
        out_ << line(state) << "\n" << std::flush;
        last_logged_ = state;
        pending_.reset();
    } else {
        pending_ = state;
    }
}

void Progress::finish() {
    if (pending_) {
        out_ << line(*pending_) << "\n" << std::flush;
        last_logged_ = std::exchange(pending_, std::nullopt);
    }
    end_line();
}

void Progress::end_line() {
    if (open_line_) out_ << "\n" << std::flush;
    open_line_ = false;
}

void Progress::message(const std::string& text) {
    if (quiet_) return;
    end_line();
    out_ << text << "\n" << std::flush;
}

} // namespace mps
