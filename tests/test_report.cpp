// Run outputs (search/report.h): the Pareto front against a naive dominance check, and every file
// written from a hand-built RunResult read back: pareto.csv parsed, summary.json through
// nlohmann, report.md searched for the chosen layers and the baselines, pareto.svg rendered (or
// refused cleanly when gnuplot is missing or fails), no temporaries left.
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/ir/costs.h"
#include "search/report.h"
#include "tests/graph_builders.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

using namespace mps;
using test::TempDir;
namespace fs = std::filesystem;

namespace {

std::string read_text(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream s;
    s << in.rdbuf();
    return s.str();
}

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// Sets $PATH for the scope of the object and restores it afterwards.
class PathOverride {
public:
    explicit PathOverride(const std::string& value) {
        if (const char* old = std::getenv("PATH")) old_ = old, had_ = true;
        ::setenv("PATH", value.c_str(), 1);
    }
    ~PathOverride() {
        if (had_) ::setenv("PATH", old_.c_str(), 1);
        else ::unsetenv("PATH");
    }

private:
    std::string old_;
    bool had_ = false;
};

bool gnuplot_on_path() { return std::system("command -v gnuplot >/dev/null 2>&1") == 0; }

// RFC 4180 reader: rows of fields; quoted fields may hold commas, doubled quotes and newlines.
std::vector<std::vector<std::string>> parse_csv(const std::string& text) {
    std::vector<std::vector<std::string>> rows;
    std::vector<std::string> row;
    std::string field;
    bool quoted = false;
    for (size_t i = 0; i < text.size(); ++i) {
        const char c = text[i];
        if (quoted) {
            if (c == '"' && i + 1 < text.size() && text[i + 1] == '"') field += '"', ++i;
            else if (c == '"') quoted = false;
            else field += c;
        } else if (c == '"') {
            quoted = true;
        } else if (c == ',') {
            row.push_back(std::move(field));
            field.clear();
        } else if (c == '\n') {
            row.push_back(std::move(field));
            field.clear();
            rows.push_back(std::move(row));
            row.clear();
        } else {
            field += c;
        }
    }
    REQUIRE_FALSE(quoted);
    REQUIRE(field.empty()); // the file ends with a line break
    return rows;
}

Score score_of(const Costs& costs, double accuracy, double mean_kl, Split split = Split::validation) {
    Score s;
    s.accuracy_percent = accuracy;
    s.mean_kl = mean_kl;
    s.images = 5000;
    s.correct = static_cast<int64_t>(std::llround(accuracy * 50.0));
    s.split = split;
    s.costs = costs;
    return s;
}

// input 1x6x6 -> conv0 (4 kernels) -> relu1 -> conv2 (5 kernels) -> relu3 -> flatten4
// -> fully_connected5 (3 kernels)
Graph small_model() {
    test::GraphBuilder b({1, 6, 6});
    const std::string x = b.relu(b.conv(b.relu(b.conv(b.input(), 4)), 5));
    return b.finish(b.fully_connected(b.flatten(x), 3));
}

// A whole finished run built by hand: random kernel-wise records with synthetic accuracies that
// rise with cost (on a 0.5-point grid, so ties happen), one exact duplicate, a hand-made chosen
// policy, three uniform baselines.
struct RunFixture {
    TempDir dir;
    RunConfig config;
    RunResult result;
    BitPolicy chosen_policy;

    explicit RunFixture(bool with_choice = true) {
        config.source_path = "configs/tiny.yaml";
        config.source_text = "model: tiny\npolicy: {name: random, samples: 40}\n"
                             "constraints:\n  max_relative_bitops: 0.12\n  max_accuracy_drop: 3\n";
        config.model = "tiny";
        config.model_path = dir.file("tiny.onnx");
        write_text(config.model_path, "bytes standing in for an ONNX model");
        config.graph = small_model();
        config.policy_name = "random";
        config.policy_params = ParamValues({{"samples", int64_t{40}}, {"temperature", 0.5},
                                            {"metric", std::string("kl")}, {"greedy", true}});
        config.seed = 42;
        config.workers = 2;
        config.space.allow_pruning = true;
        config.space.constraints.max_relative_bitops = 0.12;
        config.space.constraints.max_accuracy_drop = 3.0;
        config.baselines = {{8, 8}, {4, 4}, {2, 2}};

        const Graph& g = config.graph;
        result.config = &config;
        result.versions = "mpsearch test, oneDNN 3.0, oneTBB 2021.8";
        result.fp32_validation = score_of(compute_costs(g, BitPolicy::uniform(g, 32, 32)), 91.5, 0.0);
        result.fp32_test = score_of(result.fp32_validation.costs, 90.75, 0.0, Split::test);
        const double baseline_accuracy[] = {91.25, 87.5, 40.0};
        for (size_t i = 0; i < config.baselines.size(); ++i) {
            BaselineResult b;
            b.bits = config.baselines[i];
            b.policy = BitPolicy::uniform(g, b.bits.weight_bits, b.bits.activation_bits);
            const Costs costs = compute_costs(g, b.policy);
            b.validation = score_of(costs, baseline_accuracy[i], 0.01 * double(i));
            b.test = score_of(costs, baseline_accuracy[i] - 0.5, 0.01 * double(i), Split::test);
            result.baselines.push_back(b);
        }

        test::Rng rng(3);
        const int weight_choices[] = {8, 6, 4, 3, 2, 0};
        const int activation_choices[] = {8, 6, 4};
        const char* stages[] = {"random", "descent", "refine, \"late\""}; // needs CSV quoting
        for (int i = 0; i < 40; ++i) {
            BitPolicy p = BitPolicy::uniform(g, 8, 8);
            for (LayerBits& l : p.layers) {
                l.activation_bits = activation_choices[int(rng.uniform(0.0f, 2.999f))];
                for (int& w : l.weight_bits) w = weight_choices[int(rng.uniform(0.0f, 5.999f))];
                l.weight_bits[0] = std::max(l.weight_bits[0], 2); // never a whole layer pruned
            }
            const Costs costs = compute_costs(g, p);
            const double accuracy =
                std::round(2.0 * (70.0 + 20.0 * std::sqrt(costs.relative_bitops() / 0.0625) +
                                  rng.uniform(-3.0f, 3.0f))) / 2.0;
            add_record(p, costs, std::min(accuracy, 91.0), stages[i % 3]);
        }
        add_record(result.records[7].evaluation.policy, result.records[7].evaluation.score.costs,
                   result.records[7].evaluation.score.accuracy_percent, "random");

        chosen_policy = BitPolicy::uniform(g, 8, 8);
        chosen_policy.layers[0].weight_bits = {4, 6, 4, 4};
        chosen_policy.layers[1].activation_bits = 6;
        chosen_policy.layers[1].weight_bits = {2, 0, 2, 3, 2};
        chosen_policy.layers[2].activation_bits = 4;
        chosen_policy.layers[2].weight_bits = {8, 8, 8};
        add_record(chosen_policy, compute_costs(g, chosen_policy), 90.5, "refine, \"late\"");
        if (with_choice) {
            result.chosen = result.records.size() - 1;
            result.chosen_test = score_of(compute_costs(g, chosen_policy), 89.25, 0.03, Split::test);
            result.chosen_policy_file = "policy.yaml";
        }
        result.stop_reason = "max_evaluations reached";
        result.search_seconds = 12.5;
        result.resumed_evaluations = 4;
    }

    void add_record(const BitPolicy& policy, const Costs& costs, double accuracy, const std::string& stage) {
        ArchiveRecord r;
        r.id = static_cast<int64_t>(result.records.size());
        r.batch = r.id / 8;
        r.stage = stage;
        r.evaluation.policy = policy;
        r.evaluation.score = score_of(costs, accuracy, 0.001 * double(r.id + 1));
        r.elapsed_seconds = 0.25 * double(r.id);
        result.records.push_back(std::move(r));
    }

    std::string out(const std::string& name) const { return dir.file(name); }
};

// The records of `points` (index order) for the naive check.
std::set<size_t> naive_front(const std::vector<ArchiveRecord>& records,
                             double (*cost)(const ArchiveRecord&)) {
    std::set<size_t> front;
    for (size_t i = 0; i < records.size(); ++i) {
        const double ci = cost(records[i]), ai = records[i].evaluation.score.accuracy_percent;
        bool dominated = false;
        for (size_t j = 0; j < records.size() && !dominated; ++j) {
            const double cj = cost(records[j]), aj = records[j].evaluation.score.accuracy_percent;
            const bool better = cj <= ci && aj >= ai && (cj < ci || aj > ai);
            const bool earlier_twin = j < i && cj == ci && aj == ai;
            dominated = better || earlier_twin;
        }
        if (!dominated) front.insert(i);
    }
    return front;
}

ArchiveRecord point(int64_t bitops, int64_t weight_bits, double accuracy) {
    ArchiveRecord r;
    r.evaluation.score.costs.bitops = bitops;
    r.evaluation.score.costs.fp32_bitops = 1024;
    r.evaluation.score.costs.weight_bits = weight_bits;
    r.evaluation.score.costs.fp32_weight_bits = 4096;
    r.evaluation.score.accuracy_percent = accuracy;
    return r;
}

} // namespace

TEST_CASE("report: pareto_front equals a naive dominance check on random points with ties") {
    test::Rng rng(11);
    for (int trial = 0; trial < 200; ++trial) {
        const int n = trial % 50;
        std::vector<ArchiveRecord> records;
        for (int i = 0; i < n; ++i) {
            // A coarse grid makes equal costs, equal accuracies and exact duplicates common.
            records.push_back(point(int64_t(rng.uniform(1.0f, 12.0f)), int64_t(rng.uniform(0.0f, 9.0f)) * 8,
                                    std::floor(rng.uniform(0.0f, 8.0f)) * 0.5));
            if (i > 0 && rng.uniform(0.0f, 1.0f) < 0.15) {
                const ArchiveRecord twin = records[size_t(i) / 2];
                records.push_back(twin);
            }
        }
        for (auto cost : {&relative_bitops_of, &weight_bytes_of}) {
            const std::vector<FrontPoint> front = pareto_front(records, cost);
            std::set<size_t> got;
            for (size_t k = 0; k < front.size(); ++k) {
                const FrontPoint& p = front[k];
                got.insert(p.record);
                CHECK(p.cost == cost(records[p.record]));
                CHECK(p.accuracy == records[p.record].evaluation.score.accuracy_percent);
                if (k > 0) {
                    CHECK(p.cost > front[k - 1].cost);
                    CHECK(p.accuracy > front[k - 1].accuracy);
                }
            }
            INFO("trial " << trial << ", " << records.size() << " points");
            CHECK(got.size() == front.size());
            CHECK(got == naive_front(records, cost));
        }
    }
}

TEST_CASE("report: pareto_front by hand keeps the earliest duplicate and drops equal-cost losers") {
    const std::vector<ArchiveRecord> records{
        point(4, 0, 80.0), point(2, 0, 70.0), point(4, 0, 80.0), // 2 duplicates 0
        point(4, 0, 75.0),                                       // same cost, less accurate
        point(8, 0, 80.0),                                       // dearer, not more accurate
        point(8, 0, 90.0), point(1, 0, 60.0)};
    const std::vector<FrontPoint> front = pareto_front(records, relative_bitops_of);
    REQUIRE(front.size() == 4);
    CHECK(front[0].record == 6);
    CHECK(front[1].record == 1);
    CHECK(front[2].record == 0);
    CHECK(front[3].record == 5);
    CHECK(front[3].cost == 8.0 / 1024.0);
    CHECK(pareto_front(std::span<const ArchiveRecord>{}, relative_bitops_of).empty());
}

TEST_CASE("report: pareto.csv parses back to both fronts with round-tripping numbers") {
    RunFixture f;
    write_run_outputs(f.dir.path().string(), f.result);
    const auto rows = parse_csv(read_text(f.out("pareto.csv")));
    const std::vector<std::string> header{"front", "record", "stage", "relative_bitops",
                                          "weight_bytes", "relative_weight_bytes", "macs_unpruned",
                                          "validation_accuracy", "mean_kl", "policy"};
    REQUIRE(!rows.empty());
    CHECK(rows[0] == header);

    const auto bitops = pareto_front(f.result.records, relative_bitops_of);
    const auto bytes = pareto_front(f.result.records, weight_bytes_of);
    REQUIRE(bitops.size() >= 3);
    REQUIRE(rows.size() == 1 + bitops.size() + bytes.size());
    for (size_t i = 1; i < rows.size(); ++i) {
        const auto& row = rows[i];
        REQUIRE(row.size() == header.size());
        const bool on_bitops = i <= bitops.size();
        const FrontPoint& p = on_bitops ? bitops[i - 1] : bytes[i - 1 - bitops.size()];
        const ArchiveRecord& r = f.result.records[p.record];
        const Costs& c = r.evaluation.score.costs;
        INFO("row " << i);
        CHECK(row[0] == (on_bitops ? "bitops" : "weight_bytes"));
        CHECK(std::stoll(row[1]) == r.id);
        CHECK(row[2] == r.stage);
        CHECK(std::strtod(row[3].c_str(), nullptr) == c.relative_bitops());
        CHECK(std::strtod(row[4].c_str(), nullptr) == c.weight_bytes());
        CHECK(std::strtod(row[5].c_str(), nullptr) == c.relative_weight_bytes());
        CHECK(std::stoll(row[6]) == c.flops / 2);
        CHECK(std::strtod(row[7].c_str(), nullptr) == r.evaluation.score.accuracy_percent);
        CHECK(std::strtod(row[8].c_str(), nullptr) == r.evaluation.score.mean_kl);
        CHECK(row[9] == r.evaluation.policy.to_string());
    }
}

TEST_CASE("report: summary.json holds the run's figures") {
    RunFixture f;
    write_run_outputs(f.dir.path().string(), f.result);
    const nlohmann::json j = nlohmann::json::parse(read_text(f.out("summary.json")));
    CHECK(j["version"] == 1);
    CHECK(j["model"] == "tiny");
    CHECK(j["model_sha256"] == sha256_file(f.config.model_path));
    CHECK(j["policy"]["name"] == "random");
    CHECK(j["policy"]["params"]["samples"] == 40);
    CHECK(j["policy"]["params"]["temperature"] == 0.5);
    CHECK(j["policy"]["params"]["metric"] == "kl");
    CHECK(j["policy"]["params"]["greedy"] == true);
    CHECK(j["seed"] == 42);
    CHECK(j["evaluations"] == f.result.records.size());
    CHECK(j["resumed_evaluations"] == 4);
    CHECK(j["search_seconds"] == 12.5);
    CHECK(j["stop_reason"] == "max_evaluations reached");
    CHECK(j["fp32"]["validation_accuracy"] == 91.5);
    CHECK(j["fp32"]["test_accuracy"] == 90.75);

    const ArchiveRecord& r = f.result.records[*f.result.chosen];
    const Costs& c = r.evaluation.score.costs;
    const auto& chosen = j["chosen"];
    CHECK(chosen["record"] == r.id);
    CHECK(chosen["stage"] == r.stage);
    CHECK(chosen["policy"] == f.chosen_policy.to_string());
    CHECK(chosen["validation_accuracy"] == 90.5);
    CHECK(chosen["test_accuracy"] == 89.25);
    CHECK(chosen["mean_kl"].get<double>() == r.evaluation.score.mean_kl);
    CHECK(chosen["relative_bitops"].get<double>() == c.relative_bitops());
    CHECK(chosen["bitops"] == c.bitops);
    CHECK(chosen["weight_bytes"].get<double>() == c.weight_bytes());
    CHECK(chosen["relative_weight_bytes"].get<double>() == c.relative_weight_bytes());
    CHECK(chosen["macs_unpruned"] == c.flops / 2);
    CHECK(chosen["macs_unpruned"] < c.macs); // one kernel of conv2 is pruned
    CHECK(chosen["peak_activation_bytes"].get<double>() == c.peak_activation_bytes());
    CHECK(chosen["policy_file"] == "policy.yaml");

    REQUIRE(j["baselines"].size() == 3);
    for (size_t i = 0; i < 3; ++i) {
        const BaselineResult& b = f.result.baselines[i];
        const auto& jb = j["baselines"][i];
        CHECK(jb["bits"] == (i == 0 ? "W8A8" : i == 1 ? "W4A4" : "W2A2"));
        CHECK(jb["validation_accuracy"] == b.validation.accuracy_percent);
        CHECK(jb["test_accuracy"] == b.test.accuracy_percent);
        CHECK(jb["relative_bitops"].get<double>() == b.validation.costs.relative_bitops());
        CHECK(jb["weight_bytes"].get<double>() == b.validation.costs.weight_bytes());
    }

    CHECK(j["constraints"].size() == 2);
    CHECK(j["constraints"]["max_relative_bitops"] == 0.12);
    CHECK(j["constraints"]["max_accuracy_drop"] == 3.0);
    CHECK_FALSE(j["constraints"].contains("max_weight_bytes"));

    const auto bitops = pareto_front(f.result.records, relative_bitops_of);
    const auto bytes = pareto_front(f.result.records, weight_bytes_of);
    REQUIRE(j["pareto_bitops"].size() == bitops.size());
    REQUIRE(j["pareto_weight_bytes"].size() == bytes.size());
    for (size_t i = 0; i < bitops.size(); ++i) {
        CHECK(j["pareto_bitops"][i]["record"] == f.result.records[bitops[i].record].id);
        CHECK(j["pareto_bitops"][i]["relative_bitops"].get<double>() == bitops[i].cost);
        CHECK(j["pareto_bitops"][i]["validation_accuracy"].get<double>() == bitops[i].accuracy);
    }
    for (size_t i = 0; i < bytes.size(); ++i) {
        CHECK(j["pareto_weight_bytes"][i]["record"] == f.result.records[bytes[i].record].id);
        CHECK(j["pareto_weight_bytes"][i]["weight_bytes"].get<double>() == bytes[i].cost);
    }
}

TEST_CASE("report: report.md shows the chosen layers, the comparison, the baselines and the config") {
    RunFixture f;
    write_run_outputs(f.dir.path().string(), f.result);
    const std::string md = read_text(f.out("report.md"));
    // The first line holding `start` at or after `from`.
    auto line_of = [&](const std::string& start, size_t from = 0) {
        const size_t at = md.find(start, from);
        REQUIRE_MESSAGE(at != std::string::npos, "no line starting with " << start);
        return md.substr(at, md.find('\n', at) - at);
    };
    CHECK(md.starts_with("# mpsearch run: tiny, policy random\n"));
    CHECK(md.find(f.chosen_policy.to_string()) != std::string::npos);
    CHECK(md.find("max_evaluations reached") != std::string::npos);
    CHECK(md.find("mpsearch test, oneDNN 3.0, oneTBB 2021.8") != std::string::npos);

    // Per-layer table: layer | kernels | activation bits | mean | min | max | histogram | share.
    const Costs c = compute_costs(f.config.graph, f.chosen_policy);
    const auto& layers = f.chosen_policy.layers;
    auto share = [&](size_t i) {
        char text[32];
        std::snprintf(text, sizeof text, "%.1f %%", 100.0 * double(c.layers[i].bitops) / double(c.bitops));
        return std::string(text);
    };
    CHECK(line_of("| " + layers[0].name + " |") ==
          "| " + layers[0].name + " | 4 | 8 | 4.50 | 4 | 6 | 4x3 6x1 | " + share(0) + " |");
    CHECK(line_of("| " + layers[1].name + " |") ==
          "| " + layers[1].name + " | 5 | 6 | 1.80 | 0 | 3 | 2x3 3x1 0x1 | " + share(1) + " |");
    CHECK(line_of("| " + layers[2].name + " |") ==
          "| " + layers[2].name + " | 3 | 4 | 8.00 | 8 | 8 | 8x3 | " + share(2) + " |");

    // The chosen point next to FP32 and the closest uniform baseline not above its BitOPs.
    const double chosen_bitops = c.relative_bitops();
    const BaselineResult* closest = nullptr;
    for (const BaselineResult& b : f.result.baselines)
        if (b.validation.costs.relative_bitops() <= chosen_bitops &&
            (!closest || b.validation.costs.relative_bitops() > closest->validation.costs.relative_bitops()))
            closest = &b;
    REQUIRE(closest != nullptr);
    const std::string name = "W" + std::to_string(closest->bits.weight_bits) + "A" +
                             std::to_string(closest->bits.activation_bits);
    CHECK(line_of("| | chosen |") == "| | chosen | FP32 | uniform " + name + " |");
    CHECK(line_of("| validation accuracy (%) |").starts_with("| validation accuracy (%) | 90.50 | 91.50 |"));
    CHECK(line_of("| test accuracy (%) |").starts_with("| test accuracy (%) | 89.25 | 90.75 |"));
    CHECK(line_of("| MACs of unpruned kernels |")
              .starts_with("| MACs of unpruned kernels | " + std::to_string(c.flops / 2) + " | " +
                           std::to_string(c.macs) + " |"));

    // Uniform baselines table: bits | relative BitOPs | weight bytes | validation | test.
    CHECK(line_of("| W8A8 |").ends_with("| 91.25 | 90.75 |"));
    CHECK(line_of("| W4A4 |").ends_with("| 87.50 | 87.00 |"));
    CHECK(line_of("| W2A2 |").ends_with("| 40.00 | 39.50 |"));

    // Pareto table: one row per front point; the chosen point is on it (nothing beats 90.5 as cheaply).
    const auto front = pareto_front(f.result.records, relative_bitops_of);
    const size_t section = md.find("## Pareto front");
    REQUIRE(section != std::string::npos);
    for (const FrontPoint& p : front)
        CHECK(md.find("\n| " + std::to_string(f.result.records[p.record].id) + " ", section) !=
              std::string::npos);
    CHECK(md.find("| " + std::to_string(*f.result.chosen) + " (chosen) |") != std::string::npos);

    // Evaluations per stage, and the config echo.
    const size_t stages = md.find("## Evaluations per stage");
    REQUIRE(stages != std::string::npos);
    CHECK(line_of("| random |", stages) == "| random | 15 |");
    CHECK(line_of("| descent |", stages) == "| descent | 13 |");
    CHECK(line_of("| refine, \"late\" |", stages) == "| refine, \"late\" | 14 |");
    CHECK(line_of("| total |", stages) == "| total | 42 |");
    CHECK(md.find("```yaml\n" + f.config.source_text + "```\n") != std::string::npos);
    CHECK(md.find("max relative BitOPs: 0.12") != std::string::npos);
    CHECK(md.find("objective: accuracy") != std::string::npos);
}

TEST_CASE("report: a run where nothing met the constraints says so and still shows the front") {
    RunFixture f(false);
    write_run_outputs(f.dir.path().string(), f.result);
    const std::string md = read_text(f.out("report.md"));
    CHECK(md.find("No evaluated policy met the constraints") != std::string::npos);
    CHECK(md.find("| weight bits histogram |") == std::string::npos);
    const auto front = pareto_front(f.result.records, relative_bitops_of);
    for (const FrontPoint& p : front)
        CHECK(md.find("\n| " + std::to_string(f.result.records[p.record].id) + " | ") != std::string::npos);
    const nlohmann::json j = nlohmann::json::parse(read_text(f.out("summary.json")));
    CHECK(j["chosen"].is_null());
    CHECK(j["pareto_bitops"].size() == front.size());
}

TEST_CASE("report: pareto.svg is rendered by gnuplot and nothing temporary stays behind") {
    if (!gnuplot_on_path()) {
        MESSAGE("gnuplot is not on PATH; the SVG cannot be checked here");
        return;
    }
    RunFixture f;
    const std::vector<std::string> warnings = write_run_outputs(f.dir.path().string(), f.result);
    CHECK(warnings.empty());
    const std::string svg = read_text(f.out("pareto.svg"));
    CHECK((svg.starts_with("<?xml") || svg.starts_with("<svg")));
    CHECK(svg.find("</svg>") != std::string::npos);
    CHECK(svg.find("W4A4") != std::string::npos); // a baseline label
    CHECK(read_text(f.out("report.md")).find("![Pareto front](pareto.svg)") != std::string::npos);
    CHECK(f.dir.entries() == std::set<std::string>{"tiny.onnx", "pareto.csv", "pareto.svg",
                                                   "summary.json", "report.md"});
}

TEST_CASE("report: records with rewards get reward.svg and a section in report.md") {
    if (!gnuplot_on_path()) {
        MESSAGE("gnuplot is not on PATH; the SVG cannot be checked here");
        return;
    }
    RunFixture f;
    CHECK(read_text(f.out("report.md")).empty()); // nothing written yet
    write_run_outputs(f.dir.path().string(), f.result);
    CHECK(!fs::exists(f.out("reward.svg"))); // no rewards: no plot
    for (ArchiveRecord& r : f.result.records) r.reward = -0.01 * static_cast<double>(r.id);
    CHECK(write_run_outputs(f.dir.path().string(), f.result).empty());
    const std::string svg = read_text(f.out("reward.svg"));
    CHECK(svg.find("</svg>") != std::string::npos);
    CHECK(svg.find("moving average of 20") != std::string::npos);
    CHECK(read_text(f.out("report.md")).find("![Reward per evaluation](reward.svg)") !=
          std::string::npos);
}

TEST_CASE("report: without gnuplot there is a warning and no pareto.svg, not even an old one") {
    RunFixture f;
    TempDir empty_bin;
    write_text(f.out("pareto.svg"), "<svg>a stale plot of an earlier write</svg>");
    std::vector<std::string> warnings;
    {
        PathOverride path(empty_bin.path().string());
        warnings = write_run_outputs(f.dir.path().string(), f.result);
    }
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("gnuplot not found") != std::string::npos);
    CHECK(warnings[0].find("pareto.svg not written") != std::string::npos);
    CHECK(read_text(f.out("report.md")).find("pareto.svg") == std::string::npos);
    CHECK(f.dir.entries() == std::set<std::string>{"tiny.onnx", "pareto.csv", "summary.json", "report.md"});
}

TEST_CASE("report: a gnuplot that fails halfway leaves no half svg and no temporaries") {
    RunFixture f;
    TempDir bin;
    // Writes the start of an SVG to the script's output file, complains, and fails.
    const std::string fake = bin.file("gnuplot");
    write_text(fake, "#!/bin/sh\n"
                     "out=$(sed -n \"s/^set output '\\(.*\\)'$/\\1/p\" \"$1\")\n"
                     "printf '<?xml version=\"1.0\"?><svg' > \"$out\"\n"
                     "echo 'line 12: simulated failure' >&2\n"
                     "exit 3\n");
    fs::permissions(fake, fs::perms::owner_all);
    std::vector<std::string> warnings;
    {
        PathOverride path(bin.path().string() + ":" + std::getenv("PATH")); // sed, printf
        warnings = write_run_outputs(f.dir.path().string(), f.result);
    }
    REQUIRE(warnings.size() == 1);
    CHECK(warnings[0].find("exit status 3") != std::string::npos);
    CHECK(warnings[0].find("line 12: simulated failure") != std::string::npos);
    CHECK(f.dir.entries() == std::set<std::string>{"tiny.onnx", "pareto.csv", "summary.json", "report.md"});
}

TEST_CASE("report: writing into a missing directory throws naming it") {
    RunFixture f;
    const std::string missing = f.out("no/such/run");
    try {
        write_run_outputs(missing, f.result);
        FAIL("no exception");
    } catch (const Error& e) {
        CHECK(std::string(e.what()).find(missing) != std::string::npos);
    }
    CHECK_FALSE(fs::exists(missing));
}
