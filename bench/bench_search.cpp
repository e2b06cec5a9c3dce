// Search benchmark: every policy on every zoo model under equal budgets, in one reproducible
// report (bench/run.sh drives it; docs in bench/README.md).
//
//   build/bench/mpsearch_bench_search --models lenet5,resnet8 --budgets W8A8,W4A8,W4A4,W3A3
//       --policies uniform,random,greedy_sensitivity,autoq,bayesian_bits --evaluations 300
//       [--validation-images 2000] [--seeds 1] [--policy-args NAME="key: value, ..."] --out bench/results/<date>
//
// Per (model, budget, policy, seed) one search run with the same config template: kernel
// granularity, bits {8, 6, 4, 3, 2} for weights and activations, the last layer pinned at W8A8
// (the first too where its BitOPs leave room: resnet8, vgg_small), max_relative_bitops = the
// budget's uniform cost (WxAy = x*y/1024), the same evaluation budget and seed for every policy.
// Runs go to <out>/runs/<model>/<budget>/<policy>-s<seed>; an existing run directory is resumed,
// so a killed benchmark continues where it stopped. Policies this build does not register are
// listed as missing, not silently dropped. Writes <out>/results.json, <out>/report.md and one
// <out>/pareto-<model>.svg per model (every policy's BitOPs front over all its runs, and the
// uniform baselines).
#include "bench/bench_common.h"
#include "evaluator/atomic_file.h"
#include "evaluator/error.h"
#include "search/cli_options.h"
#include "search/gnuplot.h"
#include "search/report.h"
#include "search/run.h"
#include "search/run_config.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>

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
    const mps::RunResult result = mps::run_search(config, options);
    records.insert(records.end(), result.records.begin(), result.records.end());
    json r = {{"model", model},
              {"budget", budget},
              {"budget_relative_bitops", *config.space.constraints.max_relative_bitops},
              {"policy", policy},
              {"seed", seed},
              {"evaluations", result.records.size()},
              {"search_seconds", result.search_seconds},
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
    std::printf("%-15s %-5s %-19s seed %llu: %s, %zu evaluations, %.1f s\n", model.c_str(),
                budget.c_str(), policy.c_str(), static_cast<unsigned long long>(seed),
                result.chosen ? (fixed(result.chosen_test->accuracy_percent, 2) + " % test").c_str()
                              : "nothing met the budget",
                result.records.size(), result.search_seconds);
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

std::string report(const Plan& plan, const json& results, const std::vector<std::string>& missing) {
    std::ostringstream md;
    md << markdown_header(results, "Search benchmark: every policy on every zoo model under equal "
                                   "budgets");
    md << "Same config for every run: kernel granularity, weight and activation bits {8, 6, 4, 3, "
          "2}, last layer pinned at W8A8 (first too on resnet8 and vgg_small), "
       << plan.evaluations << " evaluations at most, " << plan.validation_images
       << " validation images, seeds";
    for (uint64_t s : plan.seeds) md << " " << s;
    md << ". A budget WxAy is max_relative_bitops = the cost of uniform WxAy (x*y/1024). "
          "Accuracies are on the 10k test split, without fine-tuning.\n\n";
    md << "Engine speed (images/s of the float32, fake-quant and integer paths; candidates/s with 1 "
          "and 2 workers): [engine.md](engine.md), written by bench/run.sh next to this report. "
          "The search seconds in the tables below are each run's whole wall time (a greedy curve, "
          "an AutoQ run of its episodes).\n\n";
    if (!missing.empty()) {
        md << "Not in this build (not run): ";
        for (const std::string& m : missing) md << m << " ";
        md << "\n\n";
    }
    for (const std::string& model : plan.models) {
        md << model_table(plan, results["runs"], model);
        md << "![" << model << " Pareto fronts](pareto-" << model << ".svg)\n\n";
    }
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
        "bayesian_bits=\"steps: 100\"");
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
