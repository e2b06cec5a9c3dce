#pragma once
// SVG plots rendered by gnuplot (Debian package gnuplot-nox), for run reports and benchmarks.
// gnuplot is an optional tool at run time: when it is missing or fails, the caller gets a warning
// and no file (never half of one).
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace mps {

// `text` as a gnuplot single-quoted string (quotes doubled, line breaks dropped).
std::string gnuplot_quoted(std::string_view text);

struct PlotPoint {
    double x = 0.0, y = 0.0;
    std::string label; // optional text column (for `with labels`)
};

// A gnuplot datablock `$name`. With `log_x`, points a log axis cannot show (x <= 0) are left out;
// points that are not finite always are.
std::string datablock(const std::string& name, const std::vector<PlotPoint>& points,
                      bool log_x = true);

// Renders `svg_path`: `script_for(output)` returns a gnuplot script that sets its terminal to svg
// and its output to `output` (a temporary file next to svg_path), or an empty string when there
// is nothing to plot. The SVG is checked to be complete and renamed into place. Returns nullopt
// on success, otherwise a warning ("gnuplot not found on PATH ...; pareto.svg not written"); then
// an older file at svg_path is removed, so that it cannot contradict the files written with it.
std::optional<std::string> render_svg(const std::string& svg_path,
                                      const std::function<std::string(const std::string&)>& script_for);

} // namespace mps
