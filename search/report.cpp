// Output files of a finished run (report.h; formats in docs/outputs.md).
#include "search/report.h"

#include "search/budget_advice.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/number_text.h"
#include "evaluator/base/sha256.h"
#include "evaluator/ir/costs.h"
#include "search/gnuplot.h"

#include <nlohmann/json.hpp>


#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <sstream>
#include <utility>

namespace mps {

namespace fs = std::filesystem;

// ----------------------------------------------------------------------------------------------
// Pareto fronts

double relative_bitops_of(const ArchiveRecord& record) {
    return record.evaluation.score.costs.relative_bitops();
}

double weight_bytes_of(const ArchiveRecord& record) {
    return record.evaluation.score.costs.weight_bytes();
}

std::vector<FrontPoint> pareto_front(std::span<const ArchiveRecord> records,
                                     double (*cost)(const ArchiveRecord&)) {
    std::vector<FrontPoint> points;
    points.reserve(records.size());
    for (size_t i = 0; i < records.size(); ++i) {
        const FrontPoint p{i, cost(records[i]), records[i].evaluation.score.accuracy_percent};
        // A NaN compares with nothing (and would break the sort's ordering): it is on no front.
        if (!std::isnan(p.cost) && !std::isnan(p.accuracy)) points.push_back(p);
    }
    // Cheapest first; at equal cost the most accurate first; exact duplicates in record order.
    std::sort(points.begin(), points.end(), [](const FrontPoint& a, const FrontPoint& b) {
        if (a.cost != b.cost) return a.cost < b.cost;
        if (a.accuracy != b.accuracy) return a.accuracy > b.accuracy;
        return a.record < b.record;
    });
    // Everything before a point costs no more, so the point is non-dominated exactly when it is
    // strictly more accurate than all of them, i.e. than the last point kept.
    std::vector<FrontPoint> front;
    for (const FrontPoint& p : points)
        if (front.empty() || p.accuracy > front.back().accuracy) front.push_back(p);
    return front;
}

namespace {

// ----------------------------------------------------------------------------------------------
// Text helpers

std::string printf_text(const char* format, double v) {
    char text[64];
    std::snprintf(text, sizeof text, format, v);
    return text;
}

std::string accuracy_text(double percent) { return printf_text("%.2f", percent); }
std::string ratio_text(double ratio) { return printf_text("%.4g", ratio); }

int64_t unpruned_macs(const Costs& costs) { return costs.flops / 2; } // flops = 2 x those MACs

const Costs& costs_of(const ArchiveRecord& record) { return record.evaluation.score.costs; }

// RFC 4180: a field holding a comma, a double quote or a line break is quoted, quotes doubled.
std::string csv_field(std::string_view text) {
    if (text.find_first_of(",\"\r\n") == std::string_view::npos) return std::string(text);
    std::string out = "\"";
    for (char c : text) {
        if (c == '"') out += '"';
        out += c;
    }
    return out + '"';
}

// A Markdown table cell: a '|' would end the cell and a line break the row.
std::string md_cell(std::string_view text) {
    std::string out;
    for (char c : text) {
        if (c == '|') out += "\\|";
        else if (c == '\n' || c == '\r') out += ' ';
        else out += c;
    }
    return out;
}

// A run of backticks longer than any inside `text` (at least `min_ticks`), so that a code span
// or fence around `text` cannot end early.
std::string backtick_fence(std::string_view text, size_t min_ticks) {
    size_t longest = 0, run = 0;
    for (char c : text) {
        run = c == '`' ? run + 1 : 0;
        longest = std::max(longest, run);
    }
    return std::string(std::max(min_ticks, longest + 1), '`');
}

// A Markdown code span around `text`.
std::string md_code(std::string_view text) {
    const std::string ticks = backtick_fence(text, 1);
    const bool pad = !text.empty() && (text.front() == '`' || text.back() == '`');
    return ticks + (pad ? " " : "") + std::string(text) + (pad ? " " : "") + ticks;
}


const RunConfig& config_of(const RunResult& result) {
    if (!result.config)
        throw Failure("write_run_outputs: the RunResult has no config; set RunResult::config to "
                      "the run's RunConfig");
    return *result.config;
}

const ArchiveRecord* chosen_record(const RunResult& result) {
    if (!result.chosen) return nullptr;
    if (*result.chosen >= result.records.size())
        throw Failure("write_run_outputs: chosen record " + std::to_string(*result.chosen) +
                      " is out of range (" + std::to_string(result.records.size()) +
                      " records); it must index RunResult::records");
    return &result.records[*result.chosen];
}

// The run's two fronts, computed once for every file.
struct Fronts {
    std::vector<FrontPoint> bitops;
    std::vector<FrontPoint> weight_bytes;
};

// ----------------------------------------------------------------------------------------------
// pareto.csv

std::string pareto_csv(const RunResult& result, const Fronts& fronts) {
    std::ostringstream out;
    out << "front,record,stage,relative_bitops,weight_bytes,relative_weight_bytes,macs_unpruned,"
           "validation_accuracy,mean_kl,policy\n";
    auto rows = [&](const char* front, const std::vector<FrontPoint>& points) {
        for (const FrontPoint& p : points) {
            const ArchiveRecord& r = result.records[p.record];
            const Score& s = r.evaluation.score;
            out << front << ',' << r.id << ',' << csv_field(r.stage) << ','
                << shortest_decimal(s.costs.relative_bitops()) << ','
                << shortest_decimal(s.costs.weight_bytes()) << ','
                << shortest_decimal(s.costs.relative_weight_bytes()) << ','
                << unpruned_macs(s.costs) << ',' << shortest_decimal(s.accuracy_percent) << ','
                << shortest_decimal(s.mean_kl) << ',' << csv_field(r.evaluation.policy.to_string())
                << '\n';
        }
    };
    rows("bitops", fronts.bitops);
    rows("weight_bytes", fronts.weight_bytes);
    return out.str();
}

// ----------------------------------------------------------------------------------------------
// pareto.svg

struct Range {
    double lo = INFINITY, hi = -INFINITY;
    void add(double v) {
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    }
    bool empty() const { return lo > hi; }
};

// The gnuplot script drawing validation accuracy against relative BitOPs, or empty when there
// is no point to draw.
std::string pareto_plot_script(const RunResult& result, const Fronts& fronts,
                               const std::string& output) {
    const RunConfig& config = config_of(result);
    const Constraints& constraints = config.space.constraints;
    auto point_of = [&](const ArchiveRecord& r) {
        return PlotPoint{relative_bitops_of(r), r.evaluation.score.accuracy_percent, {}};
    };
    std::vector<PlotPoint> all, front, baselines, chosen;
    for (const ArchiveRecord& r : result.records) all.push_back(point_of(r));
    for (const FrontPoint& p : fronts.bitops) front.push_back(point_of(result.records[p.record]));
    for (const BaselineResult& b : result.baselines)
        baselines.push_back({b.validation.costs.relative_bitops(), b.validation.accuracy_percent,
                             uniform_bits_name(b.bits)});
    if (const ArchiveRecord* c = chosen_record(result)) chosen.push_back(point_of(*c));

    Range x, y;
    for (const auto* set : {&all, &baselines})
        for (const PlotPoint& p : *set)
            if (p.x > 0.0 && std::isfinite(p.y)) x.add(p.x), y.add(p.y);
    if (x.empty()) return {};
    const double fp32 = result.fp32_validation.accuracy_percent;
    y.add(fp32);
    if (constraints.max_relative_bitops) x.add(*constraints.max_relative_bitops);
    if (constraints.max_accuracy_drop) y.add(fp32 - *constraints.max_accuracy_drop);
    const double y_pad = std::max(0.5, 0.05 * (y.hi - y.lo));

    std::ostringstream s;
    s << "set terminal svg size 1000,600 noenhanced font 'sans,12' background rgb 'white'\n"
      << "set output " << gnuplot_quoted(output) << '\n'
      << "set title " << gnuplot_quoted(config.model + ": validation accuracy vs relative BitOPs (" +
                                        config.policy_name + ")") << '\n'
      << "set xlabel 'relative BitOPs (BitOPs / FP32 BitOPs, log scale)'\n"
      << "set ylabel 'validation accuracy (%)'\n"
      << "set logscale x\n"
      << "set xrange [" << shortest_decimal(x.lo / 1.3) << ':' << shortest_decimal(x.hi * 1.3)
      << "]\n"
      << "set yrange [" << shortest_decimal(y.lo - y_pad) << ':' << shortest_decimal(y.hi + y_pad)
      << "]\n"
      << "set grid\nset key outside right top\n" // beside the plot: it never hides a point
      << "set arrow from graph 0, first " << shortest_decimal(fp32) << " to graph 1, first "
      << shortest_decimal(fp32) << " nohead dashtype 3 linecolor rgb '#7f7f7f'\n";
    if (constraints.max_relative_bitops)
        s << "set arrow from first " << shortest_decimal(*constraints.max_relative_bitops)
          << ", graph 0 to first " << shortest_decimal(*constraints.max_relative_bitops)
          << ", graph 1 nohead dashtype 2 linewidth 1.5 linecolor rgb '#d62728'\n";
    if (constraints.max_accuracy_drop)
        s << "set arrow from graph 0, first "
          << shortest_decimal(fp32 - *constraints.max_accuracy_drop) << " to graph 1, first "
          << shortest_decimal(fp32 - *constraints.max_accuracy_drop) << " nohead dashtype 2 linewidth 1.5 linecolor rgb '#ff7f0e'\n";
    s << datablock("evaluations", all) << datablock("front", front)
      << datablock("baselines", baselines) << datablock("chosen", chosen);

    // Every clause draws real points except the NaN ones, which only put a line in the key.
    std::vector<std::string> clauses;
    if (!all.empty())
        clauses.push_back("$evaluations using 1:2 with points pointtype 7 pointsize 0.35 "
                          "linecolor rgb '#b0b0b0' title 'evaluations'");
    if (!front.empty())
        clauses.push_back("$front using 1:2 with linespoints pointtype 7 pointsize 0.6 "
                          "linewidth 1.5 linecolor rgb '#1f77b4' title 'BitOPs front'");
    if (!baselines.empty()) {
        clauses.push_back("$baselines using 1:2 with points pointtype 5 pointsize 0.9 "
                          "linecolor rgb '#2ca02c' title 'uniform baselines'");
        clauses.push_back("$baselines using 1:2:3 with labels offset 0,1 font ',10' "
                          "textcolor rgb '#2ca02c' notitle");
    }
    if (!chosen.empty())
        clauses.push_back("$chosen using 1:2 with points pointtype 3 pointsize 2.5 linewidth 2 "
                          "linecolor rgb '#d62728' title 'chosen'");
    clauses.push_back("NaN with lines dashtype 3 linecolor rgb '#7f7f7f' title 'FP32'");
    if (constraints.max_relative_bitops)
        clauses.push_back("NaN with lines dashtype 2 linewidth 1.5 linecolor rgb '#d62728' title " +
                          gnuplot_quoted("max relative BitOPs " +
                                         shortest_decimal(*constraints.max_relative_bitops)));
    if (constraints.max_accuracy_drop)
        clauses.push_back("NaN with lines dashtype 2 linewidth 1.5 linecolor rgb '#ff7f0e' title " +
                          gnuplot_quoted("max accuracy drop " +
                                         shortest_decimal(*constraints.max_accuracy_drop)));
    s << "plot ";
    for (size_t i = 0; i < clauses.size(); ++i) s << (i ? ", \\\n     " : "") << clauses[i];
    s << "\nunset output\n";
    return s.str();
}

// Renders pareto.svg (or returns why not; see render_svg).
std::optional<std::string> write_pareto_svg(const std::string& run_dir, const RunResult& result,
                                            const Fronts& fronts) {
    return render_svg((fs::path(run_dir) / "pareto.svg").string(), [&](const std::string& output) {
        return pareto_plot_script(result, fronts, output);
    });
}

bool has_rewards(const RunResult& result) {
    return std::any_of(result.records.begin(), result.records.end(),
                       [](const ArchiveRecord& r) { return r.reward.has_value(); });
}

// Reward per evaluation (an RL policy's learning curve) with its moving average over 20.
std::string reward_plot_script(const RunResult& result, const std::string& output) {
    std::vector<PlotPoint> rewards, average;
    double sum = 0.0;
    std::vector<double> window;
    for (const ArchiveRecord& r : result.records) {
        if (!r.reward) continue;
        const double x = static_cast<double>(r.id);
        rewards.push_back({x, *r.reward, {}});
        window.push_back(*r.reward);
        sum += *r.reward;
        if (window.size() > 20) sum -= window[window.size() - 21];
        average.push_back({x, sum / static_cast<double>(std::min<size_t>(window.size(), 20)), {}});
    }
    if (rewards.empty()) return {};
    const RunConfig& config = config_of(result);
    std::ostringstream s;
    s << "set terminal svg size 1000,450 noenhanced font 'sans,12' background rgb 'white'\n"
      << "set output " << gnuplot_quoted(output) << '\n'
      << "set title " << gnuplot_quoted(config.model + ": reward per evaluation (" +
                                        config.policy_name + ")") << '\n'
      << "set xlabel 'evaluation (record)'\nset ylabel 'reward'\nset grid\nset key top left\n"
      << datablock("rewards", rewards, false) << datablock("average", average, false)
      << "plot $rewards using 1:2 with points pointtype 7 pointsize 0.4 linecolor rgb '#b0b0b0' "
         "title 'reward', \\\n     $average using 1:2 with lines linewidth 2 linecolor rgb "
         "'#1f77b4' title 'moving average of 20'\nunset output\n";
    return s.str();
}

// ----------------------------------------------------------------------------------------------
// summary.json

using Json = nlohmann::ordered_json;

Json param_json(const ParamValue& value) {
    return std::visit([](const auto& v) { return Json(v); }, value);
}

Json front_json(const RunResult& result, const std::vector<FrontPoint>& front, const char* cost_key) {
    Json points = Json::array();
    for (const FrontPoint& p : front)
        points.push_back({{"record", result.records[p.record].id},
                          {cost_key, p.cost},
                          {"validation_accuracy", p.accuracy}});
    return points;
}

std::optional<std::string> model_sha256(const RunConfig& config) {
    std::error_code ec;
    if (config.model_path.empty() || !fs::is_regular_file(config.model_path, ec)) return std::nullopt;
    try {
        return sha256_file(config.model_path);
    } catch (const Error&) {
        return std::nullopt; // unreadable now: the key is left out, as documented
    }
}

std::string summary_json(const RunResult& result, const Fronts& fronts) {
    const RunConfig& config = config_of(result);
    Json j;
    j["version"] = 1;
    j["model"] = config.model;
    j["model_path"] = config.model_path;
    if (auto hash = model_sha256(config)) j["model_sha256"] = *hash;
    Json params = Json::object();
    for (const auto& [name, value] : config.policy_params.all()) params[name] = param_json(value);
    j["policy"] = {{"name", config.policy_name}, {"params", params}};
    j["versions"] = result.versions;
    j["onednn_isa"] = result.onednn_isa;
    j["seed"] = config.seed;
    j["workers"] = config.workers;
    j["evaluations"] = result.records.size();
    j["resumed_evaluations"] = result.resumed_evaluations;
    j["search_seconds"] = result.search_seconds;
    j["stop_reason"] = result.stop_reason;
    j["fp32"] = {{"validation_accuracy", result.fp32_validation.accuracy_percent},
                 {"test_accuracy", result.fp32_test.accuracy_percent}};

    if (const ArchiveRecord* c = chosen_record(result)) {
        const Score& s = c->evaluation.score;
        j["chosen"] = {
            {"record", c->id},
            {"stage", c->stage},
            {"policy", c->evaluation.policy.to_string()},
            {"validation_accuracy", s.accuracy_percent},
            {"test_accuracy", result.chosen_test ? Json(result.chosen_test->accuracy_percent) : Json()},
            {"mean_kl", s.mean_kl},
            {"relative_bitops", s.costs.relative_bitops()},
            {"bitops", s.costs.bitops},
            {"weight_bytes", s.costs.weight_bytes()},
            {"relative_weight_bytes", s.costs.relative_weight_bytes()},
            {"macs_unpruned", unpruned_macs(s.costs)},
            {"peak_activation_bytes", s.costs.peak_activation_bytes()},
            {"policy_file", result.chosen_policy_file},
        };
    } else {
        j["chosen"] = nullptr;
    }

    Json baselines = Json::array();
    for (const BaselineResult& b : result.baselines)
        baselines.push_back({{"bits", uniform_bits_name(b.bits)},
                             {"validation_accuracy", b.validation.accuracy_percent},
                             {"test_accuracy", b.test.accuracy_percent},
                             {"relative_bitops", b.validation.costs.relative_bitops()},
                             {"weight_bytes", b.validation.costs.weight_bytes()}});
    j["baselines"] = baselines;

    const Constraints& k = config.space.constraints;
    Json constraints = Json::object();
    if (k.max_relative_bitops) constraints["max_relative_bitops"] = *k.max_relative_bitops;
    if (k.max_weight_bytes) constraints["max_weight_bytes"] = *k.max_weight_bytes;
    if (k.max_macs) constraints["max_macs"] = *k.max_macs;
    if (k.max_accuracy_drop) constraints["max_accuracy_drop"] = *k.max_accuracy_drop;
    j["constraints"] = constraints;
    j["objective"] = objective_name(config.objective);
    j["pareto_bitops"] = front_json(result, fronts.bitops, "relative_bitops");
    j["pareto_weight_bytes"] = front_json(result, fronts.weight_bytes, "weight_bytes");
    return j.dump(2) + '\n';
}

// ----------------------------------------------------------------------------------------------
// report.md

struct WeightBitsSummary {
    double mean = 0.0;
    int min = 0, max = 0;
    std::string histogram; // "4x12 6x3 0x1": most frequent first
};

WeightBitsSummary summarize_weight_bits(const std::vector<int>& bits) {
    WeightBitsSummary s;
    if (bits.empty()) return s;
    std::map<int, int64_t> counts;
    double sum = 0.0;
    for (int b : bits) ++counts[b], sum += b;
    s.mean = sum / static_cast<double>(bits.size());
    s.min = counts.begin()->first;
    s.max = counts.rbegin()->first;
    std::vector<std::pair<int, int64_t>> ordered(counts.begin(), counts.end());
    std::stable_sort(ordered.begin(), ordered.end(), [](const auto& a, const auto& b) {
        return a.second != b.second ? a.second > b.second : a.first > b.first;
    });
    for (const auto& [b, n] : ordered)
        s.histogram += (s.histogram.empty() ? "" : " ") + std::to_string(b) + "x" + std::to_string(n);
    return s;
}

// Per-layer costs of a record: those it carries, else computed from the graph (records read
// back from an archive may carry totals only); empty when neither is possible.
std::vector<LayerCosts> layer_costs(const RunConfig& config, const ArchiveRecord& record) {
    const Costs& costs = costs_of(record);
    if (costs.layers.size() == record.evaluation.policy.layers.size()) return costs.layers;
    if (config.graph.nodes.empty()) return {};
    return compute_costs(config.graph, record.evaluation.policy).layers;
}

// The cost axis the chosen point is compared on: weight bytes when the run optimized or limited
// those alone, relative BitOPs otherwise.
bool compare_on_weight_bytes(const RunConfig& config) {
    const Constraints& k = config.space.constraints;
    return config.objective == Objective::weight_bytes ||
           (k.max_weight_bytes && !k.max_relative_bitops && !k.max_macs);
}

// The uniform baseline with the highest cost not above `limit` (the earliest of equals).
const BaselineResult* closest_baseline_below(const RunResult& result, double limit, bool weight_bytes) {
    const BaselineResult* best = nullptr;
    auto cost = [&](const BaselineResult& b) {
        return weight_bytes ? b.validation.costs.weight_bytes() : b.validation.costs.relative_bitops();
    };
    for (const BaselineResult& b : result.baselines)
        if (cost(b) <= limit && (!best || cost(b) > cost(*best))) best = &b;
    return best;
}

std::string join_bits(const std::vector<int>& bits) {
    std::string out;
    for (int b : bits) out += (out.empty() ? "" : ", ") + std::to_string(b);
    return out;
}

void report_run(std::ostream& md, const RunResult& result) {
    const RunConfig& config = config_of(result);
    std::string params;
    for (const auto& [name, value] : config.policy_params.all())
        params += (params.empty() ? "" : ", ") + name + "=" + param_to_string(value);
    md << "## Run\n\n| | |\n|---|---|\n"
       << "| model | " << md_code(config.model_path.empty() ? config.model : config.model_path) << " |\n"
       << "| policy | " << md_cell(config.policy_name) << (params.empty() ? "" : " (" + md_cell(params) + ")")
       << " |\n"
       << "| quantizers | weights " << md_cell(config.weight_quantizer.name) << ", activations "
       << md_cell(config.activation_calibration.name) << ", " << execution_path_name(config.path)
       << " path |\n"
       << "| versions | " << md_cell(result.versions) << " |\n"
       << "| oneDNN ISA | " << md_cell(result.onednn_isa) << " |\n"
       << "| seed | " << config.seed << " |\n"
       << "| workers | " << config.workers << " |\n"
       << "| evaluations | " << result.records.size() << " |\n"
       << "| resumed evaluations | " << result.resumed_evaluations << " |\n"
       << "| search seconds | " << printf_text("%.1f", result.search_seconds) << " |\n"
       << "| stop reason | " << md_cell(result.stop_reason) << " |\n\n";
}

void report_constraints(std::ostream& md, const RunConfig& config) {
    const SearchSpace& space = config.space;
    const Constraints& k = space.constraints;
    md << "## Search space, constraints and objective\n\n"
       << "- granularity: " << granularity_name(space.granularity) << "\n"
       << "- weight bits: " << join_bits(space.weight_bits)
       << (space.allow_pruning ? " (pruning single kernels allowed)" : "") << "\n"
       << "- activation bits: " << join_bits(space.activation_bits) << "\n";
    if (!space.pinned.empty()) {
        md << "- pinned:";
        for (const auto& [layer, bits] : space.pinned) md << ' ' << layer << ' ' << uniform_bits_name(bits);
        if (const std::string note = pin_share_note(config); !note.empty()) md << " (" << note << ")";
        md << "\n";
    }
    if (!k.max_relative_bitops && !k.max_weight_bytes && !k.max_macs && !k.max_accuracy_drop)
        md << "- constraints: none\n";
    if (k.max_relative_bitops)
        md << "- max relative BitOPs: " << shortest_decimal(*k.max_relative_bitops) << "\n";
    if (k.max_weight_bytes)
        md << "- max weight bytes: " << shortest_decimal(*k.max_weight_bytes) << "\n";
    if (k.max_macs) md << "- max MACs of unpruned kernels: " << *k.max_macs << "\n";
    if (k.max_accuracy_drop)
        md << "- max accuracy drop: " << shortest_decimal(*k.max_accuracy_drop)
           << " points below FP32 validation accuracy\n";
    md << "- objective: " << objective_name(config.objective) << "\n\n";
}

void report_layers(std::ostream& md, const RunConfig& config, const ArchiveRecord& chosen) {
    const std::vector<LayerCosts> layers = layer_costs(config, chosen);
    const int64_t total = costs_of(chosen).bitops;
    md << "### Per layer\n\n"
       << "| layer | kernels | activation bits | weight bits mean | min | max | weight bits histogram "
          "| BitOPs share |\n"
       << "|---|---:|---:|---:|---:|---:|---|---:|\n";
    const auto& policy_layers = chosen.evaluation.policy.layers;
    for (size_t i = 0; i < policy_layers.size(); ++i) {
        const LayerBits& l = policy_layers[i];
        const WeightBitsSummary w = summarize_weight_bits(l.weight_bits);
        const std::string share = i < layers.size() && total > 0
            ? printf_text("%.1f %%", 100.0 * static_cast<double>(layers[i].bitops) / static_cast<double>(total))
            : "—";
        md << "| " << md_cell(l.name) << " | " << l.weight_bits.size() << " | " << l.activation_bits
           << " | " << printf_text("%.2f", w.mean) << " | " << w.min << " | " << w.max << " | "
           << w.histogram << " | " << share << " |\n";
    }
    md << "\n";
}

void report_chosen(std::ostream& md, const RunResult& result) {
    const RunConfig& config = config_of(result);
    md << "## Chosen policy\n\n";
    const ArchiveRecord* chosen = chosen_record(result);
    if (!chosen) {
        md << "**No evaluated policy met the constraints.** Nothing was chosen and no policy file "
              "was written. The Pareto front below shows what the search reached; relax the "
              "constraints or raise the budget.\n\n";
        return;
    }
    const Score& s = chosen->evaluation.score;
    md << "Record " << chosen->id << " (stage " << md_code(chosen->stage) << ")";
    if (!result.chosen_policy_file.empty()) md << ", written to " << md_code(result.chosen_policy_file);
    md << ":\n\n" << md_code(chosen->evaluation.policy.to_string()) << "\n\n";

    const bool on_bytes = compare_on_weight_bytes(config);
    const BaselineResult* baseline = closest_baseline_below(
        result, on_bytes ? s.costs.weight_bytes() : s.costs.relative_bitops(), on_bytes);
    struct Column {
        std::string name, validation, test, relative_bitops, weight_bytes, relative_weight_bytes, macs;
    };
    std::vector<Column> columns{
        {"chosen", accuracy_text(s.accuracy_percent),
         result.chosen_test ? accuracy_text(result.chosen_test->accuracy_percent) : "—",
         ratio_text(s.costs.relative_bitops()), shortest_decimal(s.costs.weight_bytes()),
         ratio_text(s.costs.relative_weight_bytes()), std::to_string(unpruned_macs(s.costs))},
        // FP32: every weight at 32 bits, no kernel pruned.
        {"FP32", accuracy_text(result.fp32_validation.accuracy_percent),
         accuracy_text(result.fp32_test.accuracy_percent), "1",
         shortest_decimal(s.costs.fp32_weight_bytes()), "1", std::to_string(s.costs.macs)},
    };
    if (baseline) {
        const Costs& b = baseline->validation.costs;
        columns.push_back({"uniform " + uniform_bits_name(baseline->bits),
                           accuracy_text(baseline->validation.accuracy_percent),
                           accuracy_text(baseline->test.accuracy_percent),
                           ratio_text(b.relative_bitops()), shortest_decimal(b.weight_bytes()),
                           ratio_text(b.relative_weight_bytes()), std::to_string(unpruned_macs(b))});
    }
    md << "|";
    for (const Column& c : columns) md << " | " << c.name;
    md << " |\n|---";
    for (size_t i = 0; i < columns.size(); ++i) md << "|---:";
    md << "|\n";
    auto row = [&](const char* label, std::string Column::*field) {
        md << "| " << label;
        for (const Column& c : columns) md << " | " << c.*field;
        md << " |\n";
    };
    row("validation accuracy (%)", &Column::validation);
    row("test accuracy (%)", &Column::test);
    row("relative BitOPs", &Column::relative_bitops);
    row("weight bytes", &Column::weight_bytes);
    row("relative weight bytes", &Column::relative_weight_bytes);
    row("MACs of unpruned kernels", &Column::macs);
    const char* axis = on_bytes ? "weight bytes" : "relative BitOPs";
    if (baseline)
        md << "\n" << uniform_bits_name(baseline->bits) << " is the uniform baseline with the "
           << "highest " << axis << " not above the chosen policy's.\n\n";
    else
        md << "\nNo uniform baseline has " << axis << " as low as the chosen policy's.\n\n";
    if (const std::string note = losing_baseline_note(result); !note.empty())
        md << "**" << note << ".**\n\n";
    report_layers(md, config, *chosen);
}

void report_front(std::ostream& md, const RunResult& result, const Fronts& fronts) {
    md << "## Pareto front (validation accuracy vs relative BitOPs)\n\n";
    if (fronts.bitops.empty()) {
        md << "No evaluations.\n\n";
        return;
    }
    md << "| record | stage | relative BitOPs | weight bytes | validation accuracy (%) |\n"
       << "|---:|---|---:|---:|---:|\n";
    for (const FrontPoint& p : fronts.bitops) {
        const ArchiveRecord& r = result.records[p.record];
        const bool is_chosen = result.chosen && *result.chosen == p.record;
        md << "| " << r.id << (is_chosen ? " (chosen)" : "") << " | " << md_cell(r.stage) << " | "
           << ratio_text(p.cost) << " | " << shortest_decimal(costs_of(r).weight_bytes()) << " | "
           << accuracy_text(p.accuracy) << " |\n";
    }
    md << "\nBoth fronts, with every figure and policy: `pareto.csv`.\n\n";
}

void report_baselines(std::ostream& md, const RunResult& result) {
    md << "## Uniform baselines\n\n";
    if (result.baselines.empty()) {
        md << "None configured.\n\n";
        return;
    }
    md << "| bits | relative BitOPs | weight bytes | validation accuracy (%) | test accuracy (%) |\n"
       << "|---|---:|---:|---:|---:|\n";
    for (const BaselineResult& b : result.baselines)
        md << "| " << uniform_bits_name(b.bits) << " | " << ratio_text(b.validation.costs.relative_bitops())
           << " | " << shortest_decimal(b.validation.costs.weight_bytes()) << " | "
           << accuracy_text(b.validation.accuracy_percent) << " | "
           << accuracy_text(b.test.accuracy_percent) << " |\n";
    md << "\n";
}

void report_stages(std::ostream& md, const RunResult& result) {
    std::vector<std::pair<std::string, int64_t>> stages; // first-appearance order
    for (const ArchiveRecord& r : result.records) {
        auto it = std::find_if(stages.begin(), stages.end(),
                               [&](const auto& s) { return s.first == r.stage; });
        if (it == stages.end()) stages.emplace_back(r.stage, 1);
        else ++it->second;
    }
    md << "## Evaluations per stage\n\n| stage | evaluations |\n|---|---:|\n";
    for (const auto& [stage, count] : stages) md << "| " << md_cell(stage) << " | " << count << " |\n";
    md << "| total | " << result.records.size() << " |\n\n";
}

// Every candidate the policy scored itself too (bayesian_bits: learned ranges on its own grid),
// next to the evaluator's figure with the run's quantizers.
void report_own_accuracy(std::ostream& md, const RunResult& result) {
    if (std::none_of(result.records.begin(), result.records.end(),
                     [](const ArchiveRecord& r) { return r.own_accuracy.has_value(); }))
        return;
    md << "## The policy's own accuracy\n\n"
       << "Validation accuracy of each candidate as the policy measured it (`bayesian_bits`: the "
          "thresholded gates with the learned ranges on the Bayesian Bits grid) and as the "
          "evaluator measured it with the run's quantizers.\n\n"
       << "| id | stage | relative BitOPs | policy's own (%) | evaluator (%) |\n"
       << "|---:|---|---:|---:|---:|\n";
    for (const ArchiveRecord& r : result.records) {
        if (!r.own_accuracy) continue;
        md << "| " << r.id << " | " << md_cell(r.stage) << " | "
           << ratio_text(costs_of(r).relative_bitops()) << " | " << accuracy_text(*r.own_accuracy)
           << " | " << accuracy_text(r.evaluation.score.accuracy_percent) << " |\n";
    }
    md << "\n";
}

std::string report_md(const RunResult& result, const Fronts& fronts, bool svg_written,
                      bool reward_svg_written) {
    const RunConfig& config = config_of(result);
    std::ostringstream md;
    md << "# mpsearch run: " << config.model << ", policy " << config.policy_name << "\n\n";
    report_run(md, result);
    report_constraints(md, config);
    report_chosen(md, result);
    report_front(md, result, fronts);
    if (svg_written) md << "![Pareto front](pareto.svg)\n\n";
    report_own_accuracy(md, result);
    report_baselines(md, result);
    report_stages(md, result);
    if (reward_svg_written) md << "## Reward per evaluation\n\n![Reward per evaluation](reward.svg)\n\n";
    md << "## Configuration\n\n";
    if (config.source_text.empty()) {
        md << "(no configuration text)\n";
    } else {
        const std::string fence = backtick_fence(config.source_text, 3);
        md << fence << "yaml\n" << config.source_text
           << (config.source_text.back() == '\n' ? "" : "\n") << fence << "\n";
    }
    return md.str();
}

} // namespace

std::vector<std::string> write_run_outputs(const std::string& run_dir, const RunResult& result) {
    std::error_code ec;
    if (!fs::is_directory(run_dir, ec))
        throw Failure(run_dir + ": run directory does not exist (or is not a directory); create "
                                "it before writing the run's outputs");
    // Refuse an inconsistent result before any file is touched.
    config_of(result);
    chosen_record(result);
    const fs::path dir(run_dir);
    const Fronts fronts{pareto_front(result.records, relative_bitops_of),
                        pareto_front(result.records, weight_bytes_of)};
    std::vector<std::string> warnings;
    write_file_atomically((dir / "pareto.csv").string(), pareto_csv(result, fronts));
    const std::optional<std::string> svg_warning = write_pareto_svg(run_dir, result, fronts);
    if (svg_warning) warnings.push_back(*svg_warning);
    std::optional<std::string> reward_warning = std::string("no rewards");
    if (has_rewards(result)) {
        reward_warning = render_svg((dir / "reward.svg").string(), [&](const std::string& output) {
            return reward_plot_script(result, output);
        });
        if (reward_warning) warnings.push_back(*reward_warning);
    }
    write_file_atomically((dir / "summary.json").string(), summary_json(result, fronts));
    write_file_atomically((dir / "report.md").string(),
                          report_md(result, fronts, !svg_warning, !reward_warning));
    return warnings;
}

} // namespace mps
