// Search benchmark: every policy on every zoo model under equal budgets, in one reproducible
// report (bench/run.sh drives it; docs in bench/README.md).
//
//   build/bench/mpsearch_bench_search --models lenet5,resnet8 --budgets W8A8,W4A8,W4A4,W3A3
//       --policies uniform,random,greedy_sensitivity,autoq,bayesian_bits --evaluations 300
//       [--validation-images 2000] [--seeds 1] [--policy-args NAME="key: value, ..."]
//       [--compare-with bench/results/<earlier date>/results.json] --out bench/results/<date>
//
// Per (model, budget, policy, seed) one search run with the same config template: kernel
// granularity, bits {8, 6, 4, 3, 2} for weights and activations, the last layer pinned at W8A8
// (the first too where its BitOPs leave room: resnet8, vgg_small), max_relative_bitops = the
// budget's uniform cost (WxAy = x*y/1024), the same evaluation budget and seed for every policy.
// Runs go to <out>/runs/<model>/<budget>/<policy>-s<seed>; an existing run directory is resumed,
// so a killed benchmark continues where it stopped. Policies this build does not register are
// listed as missing, not silently dropped. Writes <out>/results.json, <out>/report.md and one
// <out>/pareto-<model>.svg per model (every policy's BitOPs front over all its runs, and the
// uniform baselines). The report's search cost table gives, per model and policy, the median
// seconds of its runs; with --compare-with, a reproduction section compares every run with the
// same run of an earlier results.json (exact figures, ratio of seconds).
#include "bench/bench_common.h"
#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "search/cli_options.h"
#include "search/gnuplot.h"
#include "search/report.h"
#include "search/run.h"
#include "search/run_config.h"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <optional>
#include <sstream>
#include <tuple>

namespace {

using namespace mps::bench;
using nlohmann::json;
namespace fs = std::filesystem;
namespace po = boost::program_options;

std::vector<std::string> split_list(const std::string& text) {
    std::vector<std::string> items;
    std::stringstream in(text);
    for (std::string item; std::getline(in, item, ',');)
        if (!item.empty()) items.push_back(item);
    return items;
}

struct Plan {
    std::vector<std::string> models, budgets, policies;
    std::vector<uint64_t> seeds;
    int64_t evaluations = 300;
    int64_t validation_images = 2000;
    std::string out;
    std::map<std::string, std::string> policy_args; // policy -> "key: value, ..." for its block
    std::string compare_with; // an earlier results.json of the same plan, or empty
};

// The first layer of these models is cheap enough to keep at 8 bits under every budget.
bool pin_first(const std::string& model) { return model == "resnet8" || model == "vgg_small"; }

std::string config_text(const Plan& plan, const std::string& model, const std::string& budget,
                        const std::string& policy, uint64_t seed, const std::string& output) {
    std::ostringstream y;
    y << "model: " << model << "\n"
      << "data: {calibration_images: 1000, validation_images: " << plan.validation_images << "}\n"
      << "granularity: kernel\n"
      << "bits: {weights: [8, 6, 4, 3, 2], activations: [8, 6, 4, 3, 2]}\n"
      << "pinned: {" << (pin_first(model) ? "first: W8A8, " : "") << "last: W8A8}\n"
      << "constraints: {max_relative_bitops: " << budget << "}\n"
      << "baselines: [" << budget << "]\n"
      << "policy: {name: " << policy;
    if (auto args = plan.policy_args.find(policy); args != plan.policy_args.end())
        y << ", " << args->second;
    y << "}\n"
      << "budget: {max_evaluations: " << plan.evaluations << "}\n"
      << "seed: " << seed << "\nworkers: 2\n"
      << "output: " << output << "\n";
    return y.str();
}

json score_json(const mps::Score& s) {
    return {{"accuracy", s.accuracy_percent},
            {"relative_bitops", s.costs.relative_bitops()},
            {"weight_bytes", s.costs.weight_bytes()}};
}

// Resuming a finished run replays its archive and scores only the test split and the baselines,
// so that RunResult's search_seconds (the archive's last elapsed time plus this process' set-up
// and scoring) is not what the search cost. The seconds of the run that evaluated the candidates
// are kept in this file of the run directory and reused while a resume evaluates nothing new.
constexpr const char* seconds_file_name = "bench_seconds.json";

struct MeasuredSeconds {
    double seconds = 0.0;
    int64_t evaluations = 0; // of the run that measured them: reused only for as many records
};

std::optional<MeasuredSeconds> measured_seconds(const json& j) {
    if (!j.is_object() || !j.contains("search_seconds") || !j["search_seconds"].is_number() ||
        !j.contains("evaluations") || !j["evaluations"].is_number_integer())
        return std::nullopt;
    return MeasuredSeconds{j["search_seconds"].get<double>(), j["evaluations"].get<int64_t>()};
}

// What an earlier run in `dir` measured, read before run_search rewrites summary.json: the
// seconds file, else the summary.json of a run that evaluated candidates itself (a run directory
// finished before this driver kept the seconds file).
std::optional<MeasuredSeconds> earlier_seconds(const fs::path& dir) {
    if (std::ifstream in(dir / seconds_file_name); in)
        if (auto seconds = measured_seconds(json::parse(in, nullptr, false))) return seconds;
    std::ifstream in(dir / "summary.json");
    if (!in) return std::nullopt;
    const json summary = json::parse(in, nullptr, false);
    auto seconds = measured_seconds(summary);
    if (!seconds || !summary.contains("resumed_evaluations") ||
        !summary["resumed_evaluations"].is_number_integer() ||
        summary["resumed_evaluations"].get<int64_t>() >= seconds->evaluations)
        return std::nullopt; // no figures, or they are themselves a replay's
    return seconds;
}

// One run: its figures for results.json.
json run_one(const Plan& plan, const std::string& model, const std::string& budget,
             const std::string& policy, uint64_t seed, std::vector<mps::ArchiveRecord>& records) {
    const std::string dir = (fs::path(plan.out) / "runs" / model / budget /
                             (policy + "-s" + std::to_string(seed)))
                                .string();
    mps::RunConfig config = mps::parse_run_config(config_text(plan, model, budget, policy, seed, dir),
                                                  model + "/" + budget + "/" + policy);
    fs::create_directories(fs::path(dir).parent_path());
    mps::RunOptions options;
    options.quiet = true;
    options.resume = fs::exists(fs::path(dir) / "archive.jsonl");
    const std::optional<MeasuredSeconds> earlier =
        options.resume ? earlier_seconds(dir) : std::nullopt;
    const mps::RunResult result = mps::run_search(config, options);
    records.insert(records.end(), result.records.begin(), result.records.end());

    const auto evaluations = static_cast<int64_t>(result.records.size());
    const bool replayed_only = result.resumed_evaluations == evaluations;
    const bool reused = replayed_only && earlier && earlier->evaluations == evaluations;
    const double seconds = reused ? earlier->seconds : result.search_seconds;
    mps::write_file_atomically((fs::path(dir) / seconds_file_name).string(),
                               json{{"search_seconds", seconds}, {"evaluations", evaluations}}.dump() +
                                   "\n");

    json r = {{"model", model},
              {"budget", budget},
              {"budget_relative_bitops", *config.space.constraints.max_relative_bitops},
              {"policy", policy},
              {"seed", seed},
              {"evaluations", evaluations},
              {"resumed_evaluations", result.resumed_evaluations},
              {"search_seconds", seconds},
              {"search_seconds_of_earlier_run", reused},
              {"stop_reason", result.stop_reason},
              {"fp32_test_accuracy", result.fp32_test.accuracy_percent},
              {"baseline", {{"bits", budget},
                            {"test_accuracy", result.baselines.at(0).test.accuracy_percent},
                            {"relative_bitops", result.baselines.at(0).test.costs.relative_bitops()}}},
              {"run_dir", dir}};
    if (result.chosen) {
        const mps::Evaluation& chosen = result.records[*result.chosen].evaluation;
        r["chosen"] = score_json(chosen.score);
        r["chosen"]["validation_accuracy"] = chosen.score.accuracy_percent;
        r["chosen"]["test_accuracy"] = result.chosen_test->accuracy_percent;
        r["chosen"].erase("accuracy");
    } else {
        r["chosen"] = nullptr;
    }
    std::printf("%-15s %-5s %-19s seed %llu: %s, %lld evaluations, %.1f s%s\n", model.c_str(),
                budget.c_str(), policy.c_str(), static_cast<unsigned long long>(seed),
                result.chosen ? (fixed(result.chosen_test->accuracy_percent, 2) + " % test").c_str()
                              : "nothing met the budget",
                static_cast<long long>(evaluations), seconds,
                reused ? " (resumed: the seconds of its first run)" : "");
    std::fflush(stdout); // one line per run, also when stdout is a log file
    return r;
}

double median_of(const json& runs, const std::string& model, const std::string& budget,
                 const std::string& policy, const std::function<double(const json&)>& value) {
    std::vector<double> values;
    for (const json& r : runs)
        if (r["model"] == model && r["budget"] == budget && r["policy"] == policy &&
            !r["chosen"].is_null())
            values.push_back(value(r));
    return values.empty() ? std::nan("") : median(values);
}

// One table per model: a row per policy, a column per budget; then the winner of each budget.
std::string model_table(const Plan& plan, const json& runs, const std::string& model) {
    std::ostringstream md;
    md << "### " << model << "\n\n| policy |";
    for (const std::string& b : plan.budgets) md << " " << b << " budget |";
    md << "\n|---|";
    for (size_t i = 0; i < plan.budgets.size(); ++i) md << "---:|";
    md << "\n";
    for (const std::string& p : plan.policies) {
        md << "| " << p << " |";
        for (const std::string& b : plan.budgets) {
            auto get = [&](const char* key) {
                return median_of(runs, model, b, p, [&](const json& r) {
                    return r["chosen"][key].get<double>();
                });
            };
            const double test = get("test_accuracy");
            if (std::isnan(test)) {
                md << " none met the budget |";
                continue;
            }
            const double evals = median_of(runs, model, b, p, [](const json& r) {
                return r["evaluations"].get<double>();
            });
            const double seconds = median_of(runs, model, b, p, [](const json& r) {
                return r["search_seconds"].get<double>();
            });
            md << " **" << fixed(test, 2) << " %** (" << fixed(get("relative_bitops"), 4) << ", "
               << fixed(get("weight_bytes") / 1024.0, 1) << " KiB, " << fixed(evals, 0) << " ev, "
               << fixed(seconds, 0) << " s) |";
        }
        md << "\n";
    }
    md << "| uniform WxAy, no pins (baseline) |";
    for (const std::string& b : plan.budgets) {
        double baseline = std::nan("");
        for (const json& r : runs)
            if (r["model"] == model && r["budget"] == b)
                baseline = r["baseline"]["test_accuracy"].get<double>();
        md << " " << (std::isnan(baseline) ? std::string("-") : fixed(baseline, 2) + " %") << " |";
    }
    md << "\n| **best** |";
    for (const std::string& b : plan.budgets) {
        std::string best = "-";
        double best_test = -1.0;
        for (const std::string& p : plan.policies) {
            const double t = median_of(runs, model, b, p, [](const json& r) {
                return r["chosen"]["test_accuracy"].get<double>();
            });
            if (!std::isnan(t) && t > best_test) best_test = t, best = p;
        }
        md << " " << best << " |";
    }
    md << "\n\nCells: test accuracy of the chosen policy (median over seeds), its relative BitOPs, "
          "weight KiB, evaluations and search seconds.\n\n";
    return md.str();
}

// Every policy's BitOPs front over all its runs on `model`, overlaid, with uniform baselines.
void write_pareto_plot(const Plan& plan, const std::string& model,
                       const std::map<std::string, std::vector<mps::ArchiveRecord>>& records,
                       const json& runs) {
    const std::string path = (fs::path(plan.out) / ("pareto-" + model + ".svg")).string();
    auto warning = mps::render_svg(path, [&](const std::string& output) {
        std::ostringstream s;
        s << "set terminal svg size 1000,600 noenhanced font 'sans,12' background rgb 'white'\n"
          << "set output " << mps::gnuplot_quoted(output) << "\n"
          << "set title " << mps::gnuplot_quoted(model + ": validation accuracy vs relative BitOPs, "
                                                           "Pareto front of each policy") << "\n"
          << "set xlabel 'relative BitOPs (log scale)'\nset ylabel 'validation accuracy (%)'\n"
          << "set logscale x\nset grid\nset key outside right top\nset yrange [0:100]\n";
        std::vector<std::string> clauses;
        for (const auto& [policy, list] : records) {
            std::vector<mps::PlotPoint> points;
            for (const mps::FrontPoint& p : mps::pareto_front(list, mps::relative_bitops_of))
                points.push_back({p.cost, p.accuracy, {}});
            const std::string name = "front_" + std::to_string(clauses.size());
            s << mps::datablock(name, points);
            clauses.push_back("$" + name + " using 1:2 with linespoints pointsize 0.5 title " +
                              mps::gnuplot_quoted(policy));
        }
        std::vector<mps::PlotPoint> baselines;
        for (const json& r : runs)
            if (r["model"] == model && r["policy"] == plan.policies.front())
                baselines.push_back({r["baseline"]["relative_bitops"].get<double>(),
                                     r["baseline"]["test_accuracy"].get<double>(),
                                     r["budget"].get<std::string>()});
        s << mps::datablock("baselines", baselines);
        clauses.push_back("$baselines using 1:2 with points pointtype 5 title 'uniform (test)'");
        clauses.push_back("$baselines using 1:2:3 with labels offset 0,1 notitle");
        s << "plot ";
        for (size_t i = 0; i < clauses.size(); ++i) s << (i ? ", \\\n     " : "") << clauses[i];
        s << "\nunset output\n";
        return s.str();
    });
    if (warning) std::fprintf(stderr, "warning: %s\n", warning->c_str());
}

std::string joined(const std::vector<std::string>& items) {
    std::string text;
    for (const std::string& item : items) text += (text.empty() ? "" : ", ") + item;
    return text;
}

std::string seed_list(const Plan& plan) {
    std::vector<std::string> seeds;
    for (uint64_t s : plan.seeds) seeds.push_back(std::to_string(s));
    return joined(seeds);
}

// ---- Search cost: the seconds of one run of each policy -------------------------------------

// Per model and policy, over its runs (every budget and seed, each with the same evaluation
// budget): how many, the median, min and max search seconds, the median evaluations and the
// median seconds per evaluation.
json search_cost(const Plan& plan, const json& runs) {
    json rows = json::array();
    for (const std::string& model : plan.models)
        for (const std::string& policy : plan.policies) {
            std::vector<double> seconds, evaluations, per_evaluation;
            for (const json& r : runs) {
                if (r["model"] != model || r["policy"] != policy) continue;
                seconds.push_back(r["search_seconds"].get<double>());
                evaluations.push_back(r["evaluations"].get<double>());
                if (evaluations.back() > 0) per_evaluation.push_back(seconds.back() / evaluations.back());
            }
            if (seconds.empty()) continue;
            rows.push_back({{"model", model},
                            {"policy", policy},
                            {"runs", seconds.size()},
                            {"median_seconds", median(seconds)},
                            {"min_seconds", *std::min_element(seconds.begin(), seconds.end())},
                            {"max_seconds", *std::max_element(seconds.begin(), seconds.end())},
                            {"median_evaluations", median(evaluations)},
                            {"median_seconds_per_evaluation",
                             per_evaluation.empty() ? json(nullptr) : json(median(per_evaluation))}});
        }
    return {{"median_over", "the runs of one model and policy: one per budget (" +
                                joined(plan.budgets) + ") and seed (" + seed_list(plan) +
                                "), each with the same evaluation budget (max_evaluations " +
                                std::to_string(plan.evaluations) +
                                "); search_seconds is a run's whole wall time"},
            {"rows", rows}};
}

std::string search_cost_section(const Plan& plan, const json& cost) {
    std::ostringstream md;
    md << "## Search cost\n\n"
       << "What one run of each policy costs. A row's median, min and max are over that model and "
          "policy's runs: one per budget ("
       << joined(plan.budgets) << ") and seed (" << seed_list(plan)
       << "), that is the same search at different BitOPs budgets, each with the same evaluation "
          "budget ("
       << plan.evaluations << " evaluations at most).";
    auto has = [&](const std::string& p) {
        return std::find(plan.policies.begin(), plan.policies.end(), p) != plan.policies.end();
    };
    if (has("greedy_sensitivity")) md << " The greedy_sensitivity row is the cost of one greedy curve.";
    if (has("autoq"))
        md << " The autoq row is the cost of one AutoQ run; an episode is one candidate, so its "
              "evaluations are its episodes (at "
           << plan.evaluations << " evaluations: one " << plan.evaluations << "-episode AutoQ run).";
    md << " Seconds are a run's whole wall time: loading, the FP32 reference, the search, and "
          "scoring the chosen policy and the uniform baseline on the test split; a run resumed "
          "with nothing left to evaluate keeps the seconds of the run that evaluated it.\n\n"
       << "| model | policy | runs | median s | min s | max s | median evaluations | "
          "median s / evaluation |\n|---|---|---:|---:|---:|---:|---:|---:|\n";
    for (const json& row : cost["rows"]) {
        const json& per = row["median_seconds_per_evaluation"];
        md << "| " << row["model"].get<std::string>() << " | " << row["policy"].get<std::string>()
           << " | " << row["runs"] << " | " << fixed(row["median_seconds"].get<double>(), 1)
           << " | " << fixed(row["min_seconds"].get<double>(), 1) << " | "
           << fixed(row["max_seconds"].get<double>(), 1) << " | "
           << fixed(row["median_evaluations"].get<double>(), 0) << " | "
           << (per.is_null() ? std::string("-") : fixed(per.get<double>(), 3)) << " |\n";
    }
    md << "\n";
    return md.str();
}

// ---- Reproduction: every run against the same run of an earlier results.json ----------------

using RunKey = std::tuple<std::string, std::string, std::string, uint64_t>; // model, budget, policy, seed

RunKey key_of(const json& run) {
    return {run["model"].get<std::string>(), run["budget"].get<std::string>(),
            run["policy"].get<std::string>(), run["seed"].get<uint64_t>()};
}

json key_json(const RunKey& key) {
    return {{"model", std::get<0>(key)},
            {"budget", std::get<1>(key)},
            {"policy", std::get<2>(key)},
            {"seed", std::get<3>(key)}};
}

// The figures that must repeat exactly with the same seeds, as results.json stores them.
struct Figure {
    const char* key;   // in the run's "chosen" object, or the run itself for "evaluations"
    const char* label; // in the report
};
constexpr Figure exact_figures[] = {{"test_accuracy", "chosen test accuracy"},
                                    {"validation_accuracy", "chosen validation accuracy"},
                                    {"relative_bitops", "chosen relative BitOPs"},
                                    {"evaluations", "evaluations"}};

json figure_of(const json& run, const Figure& figure) {
    if (std::string(figure.key) == "evaluations") return run["evaluations"];
    return run["chosen"].is_null() ? json(nullptr) : run["chosen"][figure.key];
}

// Reads the --compare-with file before any run starts, so that a wrong path fails at once.
json read_earlier_results(const std::string& path) {
    const std::string fix =
        "; --compare-with takes the results.json that an earlier mpsearch_bench_search run of the "
        "same plan wrote (e.g. bench/results/2026-11-27/results.json)";
    if (!fs::exists(path)) throw mps::Error("--compare-with " + path + ": no such file" + fix);
    if (fs::is_directory(path))
        throw mps::Error("--compare-with " + path + ": is a directory (its results.json is --compare-with " +
                         (fs::path(path) / "results.json").string() + ")" + fix);
    std::ifstream in(path);
    if (!in) throw mps::Error("--compare-with " + path + ": cannot open the file for reading" + fix);
    json results;
    try {
        results = json::parse(in);
    } catch (const json::exception& e) {
        throw mps::Error("--compare-with " + path + ": not JSON (" + e.what() + ")" + fix);
    }
    const bool shaped = results.is_object() && results.contains("command") &&
                        results["command"].is_string() &&
                        results["command"].get<std::string>().find("mpsearch_bench_search") !=
                            std::string::npos &&
                        results.contains("runs") && results["runs"].is_array();
    if (!shaped)
        throw mps::Error("--compare-with " + path +
                         ": not a results.json of mpsearch_bench_search (it needs a \"command\" "
                         "naming mpsearch_bench_search and a \"runs\" list)" + fix);
    for (size_t i = 0; i < results["runs"].size(); ++i) {
        const json& run = results["runs"][i];
        auto fail = [&](const std::string& what) {
            throw mps::Error("--compare-with " + path + ": runs[" + std::to_string(i) + "] " + what +
                             fix);
        };
        if (!run.is_object()) fail("is not an object");
        for (const char* key : {"model", "budget", "policy"})
            if (!run.contains(key) || !run[key].is_string()) fail(std::string("has no \"") + key + "\"");
        if (!run.contains("seed") || !run["seed"].is_number_unsigned()) fail("has no \"seed\"");
        for (const char* key : {"evaluations", "search_seconds"})
            if (!run.contains(key) || !run[key].is_number()) fail(std::string("has no \"") + key + "\"");
        if (!run.contains("chosen") || !(run["chosen"].is_null() || run["chosen"].is_object()))
            fail("has no \"chosen\" (an object, or null when nothing met the budget)");
        if (run["chosen"].is_object())
            for (const Figure& f : exact_figures)
                if (std::string(f.key) != "evaluations" &&
                    !(run["chosen"].contains(f.key) && run["chosen"][f.key].is_number()))
                    fail(std::string("has no \"chosen\": {\"") + f.key + "\"}");
    }
    return results;
}

// Matches runs by (model, budget, policy, seed); counts exact repeats of each figure, lists every
// difference with both values and the runs only one side has, and the ratio of search seconds.
json reproduction(const json& runs, const json& earlier, const std::string& earlier_path) {
    std::map<RunKey, const json*> before;
    for (const json& r : earlier["runs"]) before.emplace(key_of(r), &r);
    json equal = json::object(), differences = json::array(), only_here = json::array();
    for (const Figure& f : exact_figures) equal[f.key] = 0;
    std::vector<double> ratios;
    int64_t matched = 0, none_in_both = 0, reused_seconds = 0;
    for (const json& r : runs) {
        const RunKey key = key_of(r);
        const auto old = before.find(key);
        if (old == before.end()) {
            only_here.push_back(key_json(key));
            continue;
        }
        ++matched;
        if (r["chosen"].is_null() && (*old->second)["chosen"].is_null()) ++none_in_both;
        for (const Figure& f : exact_figures) {
            const json now = figure_of(r, f), then = figure_of(*old->second, f);
            if (now == then) {
                equal[f.key] = equal[f.key].get<int64_t>() + 1;
            } else {
                json d = key_json(key);
                d["figure"] = f.key;
                d["new"] = now;
                d["earlier"] = then;
                differences.push_back(d);
            }
        }
        const double then_seconds = (*old->second)["search_seconds"].get<double>();
        if (then_seconds > 0) ratios.push_back(r["search_seconds"].get<double>() / then_seconds);
        if (r["search_seconds_of_earlier_run"].get<bool>()) ++reused_seconds;
        before.erase(old);
    }
    json only_earlier = json::array();
    for (const auto& [key, run] : before) only_earlier.push_back(key_json(key));
    json seconds = {{"runs", ratios.size()}, {"runs_with_seconds_of_an_earlier_run", reused_seconds}};
    if (!ratios.empty()) {
        seconds["median"] = median(ratios);
        seconds["min"] = *std::min_element(ratios.begin(), ratios.end());
        seconds["max"] = *std::max_element(ratios.begin(), ratios.end());
    }
    return {{"earlier",
             {{"path", earlier_path},
              {"date", earlier.value("date", std::string())},
              {"command", earlier["command"]}}},
            {"matched", matched},
            {"equal", equal},
            {"nothing_chosen_in_both", none_in_both},
            {"differences", differences},
            {"only_new", only_here},
            {"only_earlier", only_earlier},
            {"search_seconds_ratio_new_over_earlier", seconds}};
}

std::string run_name(const json& key) {
    return key["model"].get<std::string>() + " " + key["budget"].get<std::string>() + " " +
           key["policy"].get<std::string>() + " seed " + std::to_string(key["seed"].get<uint64_t>());
}

std::string figure_label(const std::string& key) {
    for (const Figure& f : exact_figures)
        if (key == f.key) return f.label;
    return key;
}

std::string figure_text(const json& value) {
    return value.is_null() ? std::string("none met the budget") : value.dump();
}

std::string reproduction_section(const json& repro) {
    std::ostringstream md;
    const json& earlier = repro["earlier"];
    md << "## Reproduction\n\n"
       << "Every run against the same run (model, budget, policy, seed) of `"
       << earlier["path"].get<std::string>() << "` (" << earlier["date"].get<std::string>()
       << ", `" << earlier["command"].get<std::string>() << "`): " << repro["matched"]
       << " runs matched, " << repro["only_new"].size() << " only here, "
       << repro["only_earlier"].size()
       << " only there. Equal means exactly equal, as the numbers are stored in results.json; a run "
          "where nothing met the budget, here and there, has equal chosen figures ("
       << repro["nothing_chosen_in_both"] << " of the matched runs).\n\n"
       << "| figure | equal | of |\n|---|---:|---:|\n";
    for (const Figure& f : exact_figures)
        md << "| " << f.label << " | " << repro["equal"][f.key] << " | " << repro["matched"] << " |\n";
    md << "\n";
    if (repro["differences"].empty()) {
        md << "No run differs.\n\n";
    } else {
        md << "| run | figure | here | earlier |\n|---|---|---:|---:|\n";
        for (const json& d : repro["differences"])
            md << "| " << run_name(d) << " | " << figure_label(d["figure"].get<std::string>()) << " | "
               << figure_text(d["new"]) << " | " << figure_text(d["earlier"]) << " |\n";
        md << "\n";
    }
    for (const char* side : {"only_new", "only_earlier"}) {
        if (repro[side].empty()) continue;
        std::vector<std::string> names;
        for (const json& key : repro[side]) names.push_back(run_name(key));
        md << (std::string(side) == "only_new" ? "Only here: " : "Only in the earlier file: ")
           << joined(names) << ".\n\n";
    }
    const json& seconds = repro["search_seconds_ratio_new_over_earlier"];
    if (seconds.contains("median")) {
        md << "Search seconds, here / earlier, over " << seconds["runs"] << " runs: median "
           << fixed(seconds["median"].get<double>(), 2) << ", min "
           << fixed(seconds["min"].get<double>(), 2) << ", max "
           << fixed(seconds["max"].get<double>(), 2);
        if (const int64_t reused = seconds["runs_with_seconds_of_an_earlier_run"].get<int64_t>())
            md << " (" << reused << " of the runs here were resumed with nothing left to evaluate "
               << "and keep the seconds of the run that evaluated them)";
        md << ".\n\n";
    }
    return md.str();
}

std::string report(const Plan& plan, const json& results, const std::vector<std::string>& missing) {
    std::ostringstream md;
    md << markdown_header(results, "Search benchmark: " + joined(plan.policies) + " on " +
                                       joined(plan.models) + " under equal budgets");
    md << "Same config for every run: kernel granularity, weight and activation bits {8, 6, 4, 3, "
          "2}, last layer pinned at W8A8 (first too on resnet8 and vgg_small), "
       << plan.evaluations << " evaluations at most, " << plan.validation_images
       << " validation images, seeds";
    for (uint64_t s : plan.seeds) md << " " << s;
    md << ". A budget WxAy is max_relative_bitops = the cost of uniform WxAy (x*y/1024). "
          "Accuracies are on the 10k test split, without fine-tuning.\n\n";
    md << "Engine speed (images/s of the float32, fake-quant and integer paths; candidates/s with 1 "
          "and 2 workers): [engine.md](engine.md), which bench/run.sh writes next to this report (a run of this "
          "driver alone has none). The search seconds in the tables below are each run's whole wall time (a greedy curve, "
          "an AutoQ run of its episodes); the search cost table at the end has their medians per model "
          "and policy.\n\n";
    if (!missing.empty()) {
        md << "Not in this build (not run): ";
        for (const std::string& m : missing) md << m << " ";
        md << "\n\n";
    }
    for (const std::string& model : plan.models) {
        md << model_table(plan, results["runs"], model);
        md << "![" << model << " Pareto fronts](pareto-" << model << ".svg)\n\n";
    }
    md << search_cost_section(plan, results["search_cost"]);
    if (results.contains("reproduction")) md << reproduction_section(results["reproduction"]);
    return md.str();
}

} // namespace

int main(int argc, char** argv) {
    Plan plan;
    std::string models = "lenet5,resnet8,vgg_small,mobilenet_tiny", budgets = "W8A8,W4A8,W4A4,W3A3",
                policies = "uniform,random,greedy_sensitivity,autoq,bayesian_bits", seeds = "1";
    std::vector<std::string> policy_args;
    po::options_description options("options");
    options.add_options()("help,h", "print this help")(
        "models", po::value(&models)->default_value(models), "zoo models, comma-separated")(
        "budgets", po::value(&budgets)->default_value(budgets), "BitOPs budgets as uniform WxAy")(
        "policies", po::value(&policies)->default_value(policies), "policies, comma-separated")(
        "seeds", po::value(&seeds)->default_value(seeds), "seeds, comma-separated")(
        "evaluations", po::value(&plan.evaluations)->default_value(plan.evaluations),
        "max_evaluations of every run")(
        "validation-images", po::value(&plan.validation_images)->default_value(plan.validation_images),
        "validation images each candidate is scored on")(
        "out", po::value(&plan.out)->required(), "output directory")(
        "policy-args", po::value(&policy_args)->composing(),
        "parameters of one policy for every run, as NAME=\"key: value, ...\" (repeatable), e.g. "
        "bayesian_bits=\"steps: 100\"")(
        "compare-with", po::value(&plan.compare_with),
        "an earlier results.json of the same plan: the report gets a reproduction section "
        "(exact figures of every run, ratio of search seconds)");
    try {
        po::variables_map values;
        if (!mps::cli::parse_options(argc, argv, options, values, std::cout)) return 0;
        mps::cli::require_positive(plan.evaluations, "evaluations");
        for (const std::string& a : policy_args) {
            const size_t eq = a.find('=');
            if (eq == std::string::npos || eq == 0)
                throw mps::Error("--policy-args '" + a + "': write NAME=\"key: value, ...\"");
            plan.policy_args[a.substr(0, eq)] = a.substr(eq + 1);
        }
        plan.models = split_list(models);
        plan.budgets = split_list(budgets);
        for (const std::string& s : split_list(seeds)) plan.seeds.push_back(std::stoull(s));
        std::vector<std::string> missing;
        for (const std::string& p : split_list(policies))
            (mps::find_policy(p) ? plan.policies : missing).push_back(p);
        const json earlier =
            plan.compare_with.empty() ? json() : read_earlier_results(plan.compare_with);
        fs::create_directories(plan.out);
        json results = results_header(argc, argv, "mpsearch_bench_search");
        results["runs"] = json::array();
        results["missing_policies"] = missing;
        for (const std::string& model : plan.models) {
            std::map<std::string, std::vector<mps::ArchiveRecord>> records; // by policy
            for (const std::string& budget : plan.budgets)
                for (const std::string& policy : plan.policies)
                    for (uint64_t seed : plan.seeds)
                        results["runs"].push_back(
                            run_one(plan, model, budget, policy, seed, records[policy]));
            write_pareto_plot(plan, model, records, results["runs"]);
        }
        results["search_cost"] = search_cost(plan, results["runs"]);
        if (!plan.compare_with.empty())
            results["reproduction"] = reproduction(results["runs"], earlier, plan.compare_with);
        mps::write_file_atomically((fs::path(plan.out) / "results.json").string(),
                                   results.dump(2) + "\n");
        mps::write_file_atomically((fs::path(plan.out) / "report.md").string(),
                                   report(plan, results, missing));
        std::printf("wrote %s/report.md\n", plan.out.c_str());
        return 0;
    } catch (const mps::Error& e) {
        std::fprintf(stderr, "mpsearch_bench_search: %s\n", e.what());
        return 2;
    } catch (const std::exception& e) {
        std::fprintf(stderr, "mpsearch_bench_search: %s\n", e.what());
        return 1;
    }
}
