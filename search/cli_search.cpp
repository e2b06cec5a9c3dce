// mpsearch search: runs the search a YAML config describes (search/run.h) and prints where the
// results are; --resume continues a run directory from its archive.
#include "search/cli.h"

#include "evaluator/base/error.h"
#include "search/budget_advice.h"
#include "search/cli_options.h"
#include "search/mpi_scorer.h"
#include "search/run.h"
#include "search/run_config.h"

#include <cstdio>
#include <filesystem>
#include <iostream>
#include <optional>
#include <sstream>

namespace mps::cli {

namespace {

void print_outcome(const RunResult& result, const std::string& dir) {
    std::printf("%lld evaluations (%lld resumed), %.1f s, %s\n",
                static_cast<long long>(result.records.size()),
                static_cast<long long>(result.resumed_evaluations), result.search_seconds,
                result.stop_reason.c_str());
    std::printf("FP32: validation %.2f %%, test %.2f %%\n", result.fp32_validation.accuracy_percent,
                result.fp32_test.accuracy_percent);
    if (result.chosen) {
        const Evaluation& chosen = result.records[*result.chosen].evaluation;
        std::printf("chosen: validation %.2f %%, test %.2f %%, relative BitOPs %.5f, weight bytes "
                    "%.0f (%s)\n",
                    chosen.score.accuracy_percent, result.chosen_test->accuracy_percent,
                    chosen.score.costs.relative_bitops(), chosen.score.costs.weight_bytes(),
                    (dir + "/" + result.chosen_policy_file).c_str());
    } else {
        std::printf("chosen: none (no evaluated policy met the constraints)\n");
    }
    for (const BaselineResult& b : result.baselines)
        std::printf("uniform %s: validation %.2f %%, test %.2f %%, relative BitOPs %.5f\n",
                    uniform_bits_name(b.bits).c_str(), b.validation.accuracy_percent,
                    b.test.accuracy_percent, b.validation.costs.relative_bitops());
    if (const std::string note = losing_baseline_note(result); !note.empty())
        std::printf("%s\n", note.c_str());
    std::printf("report: %s/report.md\n", dir.c_str());
}

// What the command line asks for; nullopt for --help (printed to `help`).
struct SearchCommand {
    RunConfig config;
    RunOptions run;
};

std::optional<SearchCommand> parse_command(int argc, char** argv, std::ostream& help) {
    po::options_description options(
        "mpsearch search options\n"
        "  mpsearch search --config run.yaml [--output DIR]\n"
        "  mpsearch search --resume DIR\n"
        "  mpirun -np N mpsearch search ... (N processes score the candidates: docs/distributed.md)\n"
        "The config format is docs/config.md; the outputs are docs/outputs.md");
    std::string config_path, resume_dir, output;
    int workers = 0;
    options.add_options()
        ("help,h", "show this help")
        ("config", po::value(&config_path), "run configuration (YAML)")
        ("resume", po::value(&resume_dir),
         "continue the run in this directory from its archive (uses its config.yaml)")
        ("output", po::value(&output), "run directory (overrides the config's `output`)")
        ("workers", po::value(&workers),
         "parallel evaluations (overrides the config's `workers`; results do not depend on it)")
        ("quiet", "no progress output");
    po::variables_map values;
    if (!parse_options(argc, argv, options, values, help)) return std::nullopt;
    if (config_path.empty() == resume_dir.empty())
        throw Error("give either --config FILE (a new run) or --resume DIR (continue a run)");
    if (!resume_dir.empty() && !output.empty())
        throw Error("--output cannot be combined with --resume: the run stays in " + resume_dir);
    if (values.count("workers")) require_positive(workers, "--workers");

    const std::filesystem::path copy = std::filesystem::path(resume_dir) / "config.yaml";
    if (!resume_dir.empty() && !std::filesystem::exists(copy))
        throw Error(resume_dir + ": holds no run to resume (no config.yaml); start one with --config");
    SearchCommand command{load_run_config(resume_dir.empty() ? config_path : copy.string()), {}};
    if (!resume_dir.empty()) command.config.output_dir = resume_dir;
    if (!output.empty()) command.config.output_dir = output;
    if (workers > 0) command.config.workers = workers;
    command.run.resume = !resume_dir.empty();
    command.run.quiet = values.count("quiet") > 0;
    return command;
}

// A rank > 0 of `mpirun ... mpsearch search`: loads what rank 0 loads and scores for it. It
// prints nothing, not even --help or errors: rank 0 reports for the job.
int serve(MpiSession& session, int argc, char** argv) {
    return serve_candidates(session, [&]() -> std::unique_ptr<Evaluator> {
        std::ostringstream help;
        std::optional<SearchCommand> command = parse_command(argc, argv, help);
        if (!command) throw Error("--help: nothing to serve");
        return make_run_evaluator(command->config, command->run, false);
    });
}

} // namespace

int run_search(int argc, char** argv) {
    MpiSession session(&argc, &argv);
    if (session.rank() > 0) return serve(session, argc, argv);
    std::optional<SearchCommand> command = parse_command(argc, argv, std::cout);
    if (!command) return 0;
    const RunConfig& config = command->config;
    RunOptions& run = command->run;
    if (session.distributed())
        run.make_scorer = [&session](Evaluator& evaluator) { return make_mpi_scorer(session, evaluator); };
    // The pins' share of the budget, before the run: a large one is worth stopping for.
    if (const std::string note = pin_share_note(config); !note.empty() && (!run.quiet || note.rfind("warning", 0) == 0))
        std::cerr << "mpsearch search: " << note << "\n";
    const RunResult result = mps::run_search(config, run);
    print_outcome(result, config.output_dir);
    return 0;
}

} // namespace mps::cli
