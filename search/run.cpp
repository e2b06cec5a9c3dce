#include "search/run.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/engine/int8_isa.h"
#include "evaluator/io/onnx_export_quantized.h"
#include "search/archive.h"
#include "search/interrupt.h"
#include "search/progress.h"
#include "search/report.h"
#include "search/run_directory.h"

#include <dnnl.hpp>
#include <oneapi/tbb/version.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <iostream>

namespace mps {

namespace fs = std::filesystem;

std::string version_text() {
    const dnnl_version_t* dnnl = dnnl_version();
    return "mpsearch 0.1, oneDNN " + std::to_string(dnnl->major) + "." + std::to_string(dnnl->minor) +
           "." + std::to_string(dnnl->patch) + ", oneTBB " + TBB_runtime_version();
}

namespace {

using Clock = std::chrono::steady_clock;

const char* const archive_name = "archive.jsonl";
const char* const config_copy_name = "config.yaml";
const char* const policy_file_name = "policy.yaml";
const char* const quantized_model_name = "model.q.onnx"; // the chosen policy, docs/export.md

// The run's images. Every problem with them is found here, before the run directory exists, so
// that a bad data set leaves nothing behind that would block a plain re-run.
EvaluationData load_data(const RunConfig& config, bool warn) {
    const int64_t classes = Tensor::count(config.graph.shapes.at(config.graph.output));
    if (const std::string warning = default_normalization_warning(config.data);
        warn && !warning.empty())
        std::cerr << "mpsearch search: " << warning << "\n";
    EvaluationData data = load_evaluation_data(config.data, config.calibration_images, classes);
    if (data.validation.count < config.validation_images)
        throw Error(data.validation.source + ": the validation split holds " +
                    std::to_string(data.validation.count) + " images, fewer than the config's " +
                    "validation_images (" + std::to_string(config.validation_images) +
                    "); lower data.validation_images or point data.dir at the complete files");
    if (config.validation_images > 0)
        data.validation = data.validation.slice(0, config.validation_images);
    check_data_fits(config.graph, config.model_path, config.data, data.validation);
    if (classes < data.validation.num_classes)
        throw Error(config.model_path + ": the model has " + std::to_string(classes) +
                    " outputs but " + data.validation.source + " has " +
                    std::to_string(data.validation.num_classes) +
                    " classes; use a model made for this data set, or other data (data.dir)");
    return data;
}

EvaluatorOptions evaluator_options(const RunConfig& config, const RunOptions& run) {
    EvaluatorOptions options;
    options.calibration_images = config.calibration_images;
    options.weight_quantizer = config.weight_quantizer;
    options.calibration_method = config.activation_calibration;
    options.path = config.path;
    options.workers = config.workers;
    options.quantizer_cache_dir = (fs::path(config.output_dir) / learned_codes_dir_name).string();
    if (run.tune_evaluator) run.tune_evaluator(options);
    return options;
}

std::string spec_text(const QuantizerSpec& spec) {
    std::string text = spec.name;
    for (const auto& [key, value] : spec.args) text += " " + key + "=" + value;
    return text;
}

// What the run's scores depend on besides the candidates (search/archive.h).
ArchiveHeader run_header(const RunConfig& config, const EvaluationData& data) {
    ArchiveHeader header{
        {"mpsearch", version_text()},
        {"model_sha256", sha256_file(config.model_path)},
        {"calibration_images", std::to_string(data.calibration.count)},
        {"validation_images", std::to_string(data.validation.count)},
        {"test_images", std::to_string(data.test.count)},
        {"weight_quantizer", spec_text(config.weight_quantizer)},
        {"activation_calibration", spec_text(config.activation_calibration)},
        {"path", execution_path_name(config.path)}};
    for (const auto& [key, value] : data_fingerprint(config.data)) header[key] = value;
    return header;
}

// A new run must not land on an earlier one: refused before anything is loaded, and again
// under the lock (another process may have started one meanwhile).
void refuse_existing_run(const RunConfig& config) {
    if (fs::exists(fs::path(config.output_dir) / archive_name))
        throw Error(config.output_dir + ": already holds a run (" + archive_name +
                    "); continue it with --resume " + config.output_dir +
                    ", or set another `output` in the config (or --output)");
}

// The archive to continue from under the lock. A resumed directory without an archive was
// killed before its first write: it starts from nothing (the archive writer creates it).
ArchiveContents earlier_contents(const RunConfig& config, const RunDirectory& dir, bool resume,
                                 const ArchiveHeader& header) {
    if (!resume) {
        refuse_existing_run(config);
        write_file_atomically(dir.file(config_copy_name), config.source_text);
        return {};
    }
    const std::string path = dir.file(archive_name);
    if (!fs::exists(path)) return {};
    ArchiveContents contents = read_archive(path, config.graph);
    if (!contents.header)
        throw Error(path + ": has no run header (its first line), so what its scores depend on "
                    "cannot be checked (an archive of an older mpsearch); start a new run");
    check_header(path, *contents.header, header);
    return contents;
}

// One search run: the evaluator, the archive (earlier contents and the writer), the progress.
class SearchRun {
public:
    SearchRun(const RunConfig& config, const RunOptions& options, Evaluator& evaluator,
              CandidateScorer& scorer, const RunDirectory& dir, ArchiveContents previous,
              const ArchiveHeader& header, Dataset train_images)
        : config_(config),
          dir_(dir.path()),
          previous_(std::move(previous)),
          writer_(dir.file(archive_name), previous_.lines),
          progress_(options.log ? *options.log : std::cerr,
                    !options.log && ::isatty(STDERR_FILENO), options.quiet),
          evaluator_(evaluator),
          scorer_(scorer),
          train_images_(std::move(train_images)) {
        if (!previous_.header) writer_.header(header);
        result_.config = &config_;
        result_.versions = version_text();
        result_.onednn_isa = effective_isa_name();
        result_.chosen_policy_file = policy_file_name;
        if (!previous_.records.empty()) elapsed_offset_ = previous_.records.back().elapsed_seconds;
        if (previous_.dropped_lines > 0)
            progress_.message("resume: dropped " + std::to_string(previous_.dropped_lines) +
                              " line(s) of a batch cut short; it is evaluated again");
        for (const std::string& name : dir.removed_temporaries())
            progress_.message("removed " + name + ", a temporary file an interrupted run left");
    }

    RunResult run() {
        result_.fp32_validation = reference(Split::validation);
        search();
        progress_.finish();
        choose();
        stop_if_interrupted();
        result_.fp32_test = reference(Split::test);
        score_baselines();
        stop_if_interrupted();
        result_.search_seconds = elapsed();
        for (const std::string& warning : write_run_outputs(config_.output_dir, result_))
            progress_.message("warning: " + warning);
        return result_;
    }

private:
    // At a safe point (every line so far is in the archive): stop when a signal came.
    void stop_if_interrupted() {
        const int signal_number = pending_interrupt();
        if (!signal_number) return;
        progress_.finish();
        throw Interrupted(std::string("interrupted by ") + interrupt_name(signal_number) +
                              " after " + std::to_string(result_.records.size()) +
                              " evaluations; every finished batch is in " + dir_.string() + "/" +
                              archive_name + ": continue with `mpsearch search --resume " +
                              dir_.string() + "`",
                          signal_number);
    }

    double elapsed() const {
        return elapsed_offset_ + std::chrono::duration<double>(Clock::now() - start_).count();
    }

    Score reference(Split split) {
        if (auto it = previous_.references.find(split_name(split)); it != previous_.references.end())
            return it->second;
        const Score score =
            evaluator_.evaluate(BitPolicy::uniform(config_.graph, float_bits, float_bits), split);
        writer_.reference(score);
        stop_if_interrupted();
        return score;
    }

    PolicyContext context() {
        PolicyContext c;
        c.graph = &config_.graph;
        c.space = config_.space;
        c.params = config_.policy_params;
        c.seed = config_.seed;
        c.objective = config_.objective;
        c.reference = result_.fp32_validation;
        c.weight_quantizer = config_.weight_quantizer;
        c.max_evaluations = config_.max_evaluations;
        c.workers = config_.workers;
        for (const ArchiveRecord& r : previous_.records)
            c.archived.push_back({r.stage, r.evaluation.policy, r.own_accuracy});
        if (train_images_.count > 0) {
            c.train_images = &train_images_;
            c.validation_images = &evaluator_.data(Split::validation);
            c.calibration = &evaluator_.calibration();
        }
        return c;
    }

    void search() {
        std::unique_ptr<SearchPolicy> policy = make_policy(config_.policy_name, context());
        for (int64_t batch = 0;; ++batch) {
            const int64_t remaining =
                config_.max_evaluations - static_cast<int64_t>(result_.records.size());
            if (remaining <= 0) {
                result_.stop_reason = "max_evaluations reached";
                break;
            }
            if (config_.max_seconds && elapsed() >= *config_.max_seconds) {
                result_.stop_reason = "max_seconds reached";
                break;
            }
            const int64_t limit = std::min(config_.batch, remaining);
            Proposal proposal = policy->propose(limit);
            if (proposal.candidates.empty()) {
                result_.stop_reason = "policy finished";
                break;
            }
            check(proposal, limit);
            std::vector<ArchiveRecord> records = replayed(proposal, batch);
            const bool fresh = records.empty();
            if (fresh) records = evaluated(proposal, batch);
            std::vector<Evaluation> scored;
            for (const ArchiveRecord& r : records) scored.push_back(r.evaluation);
            policy->observe(scored);
            const std::vector<double> rewards = policy->rewards();
            if (rewards.size() == records.size())
                for (size_t i = 0; i < records.size(); ++i) records[i].reward = rewards[i];
            const std::vector<double> own = policy->own_accuracy();
            if (own.size() == records.size())
                for (size_t i = 0; i < records.size(); ++i) records[i].own_accuracy = own[i];
            if (fresh) writer_.batch(records);
            result_.records.insert(result_.records.end(), records.begin(), records.end());
            report_progress(policy->status(), proposal.stage);
            stop_if_interrupted();
        }
    }

    // A policy that leaves its space or its limit is a bug: say which and stop.
    void check(const Proposal& proposal, int64_t limit) const {
        if (static_cast<int64_t>(proposal.candidates.size()) > limit)
            throw Failure("policy '" + config_.policy_name + "' proposed " +
                          std::to_string(proposal.candidates.size()) +
                          " candidates, more than the " + std::to_string(limit) +
                          " asked for (a bug in the policy)");
        for (const BitPolicy& candidate : proposal.candidates)
            if (std::string why = config_.space.violation(config_.graph, candidate); !why.empty())
                throw Failure("policy '" + config_.policy_name +
                              "' proposed a candidate outside the search space (" + why +
                              "): a bug in the policy");
    }

    // The archived records of this batch when resuming, or empty when it must be evaluated.
    std::vector<ArchiveRecord> replayed(const Proposal& proposal, int64_t batch) {
        const size_t first = result_.records.size();
        if (first >= previous_.records.size()) return {};
        std::vector<ArchiveRecord> records;
        for (size_t i = 0; i < proposal.candidates.size(); ++i) {
            const size_t index = first + i;
            if (index >= previous_.records.size() || previous_.records[index].batch != batch ||
                !(previous_.records[index].evaluation.policy == proposal.candidates[i]))
                throw Error(config_.output_dir + "/" + archive_name + ": search record " +
                            std::to_string(index) +
                            " differs from what the policy proposes now, so the archive was "
                            "written by another config or program version; start a new run");
            records.push_back(previous_.records[index]);
        }
        result_.resumed_evaluations += static_cast<int64_t>(records.size());
        return records;
    }

    std::vector<ArchiveRecord> evaluated(const Proposal& proposal, int64_t batch) {
        const std::vector<Score> scores = scorer_.score(proposal.candidates, Split::validation);
        std::vector<ArchiveRecord> records;
        const double now = elapsed();
        for (size_t i = 0; i < scores.size(); ++i) {
            ArchiveRecord r;
            r.id = static_cast<int64_t>(result_.records.size() + i);
            r.batch = batch;
            r.stage = proposal.stage;
            r.evaluation = {proposal.candidates[i], scores[i]};
            r.elapsed_seconds = now;
            records.push_back(std::move(r));
        }
        return records;
    }

    std::vector<Evaluation> evaluations() const {
        std::vector<Evaluation> all;
        for (const ArchiveRecord& r : result_.records) all.push_back(r.evaluation);
        return all;
    }

    void report_progress(const std::string& status, const std::string& stage) {
        ProgressState state;
        state.stage = stage;
        state.evaluations = static_cast<int64_t>(result_.records.size());
        state.max_evaluations = config_.max_evaluations;
        state.max_seconds = config_.max_seconds;
        state.elapsed_seconds = elapsed();
        state.status = status;
        // Best feasible accuracy, whatever the objective: what a user watches for. Kept up to
        // date from the records since the last report (the earlier best first, so ties still go
        // to the earliest point), not recomputed over the whole run at every batch.
        std::vector<Evaluation> candidates = progress_best_;
        for (size_t i = progress_reported_; i < result_.records.size(); ++i)
            candidates.push_back(result_.records[i].evaluation);
        progress_reported_ = result_.records.size();
        if (auto best = pick(candidates, config_.space.constraints, Objective::accuracy,
                             result_.fp32_validation.accuracy_percent))
            progress_best_ = {candidates[*best]};
        if (!progress_best_.empty()) {
            state.best_accuracy = progress_best_[0].score.accuracy_percent;
            state.best_relative_bitops = progress_best_[0].score.costs.relative_bitops();
        }
        progress_.update(state);
    }

    void choose() {
        const std::vector<Evaluation> all = evaluations();
        result_.chosen = pick(all, config_.space.constraints, config_.objective,
                              result_.fp32_validation.accuracy_percent);
        if (!result_.chosen) {
            progress_.message("no evaluated policy meets the constraints; see report.md");
            return;
        }
        const ArchiveRecord& chosen = result_.records[*result_.chosen];
        if (previous_.chosen_id && *previous_.chosen_id == chosen.id) {
            result_.chosen_test = previous_.chosen_test;
        } else {
            result_.chosen_test = evaluator_.evaluate(chosen.evaluation.policy, Split::test);
            writer_.chosen(chosen.id, *result_.chosen_test);
        }
        PolicyFile file;
        file.model_path = config_.model_path;
        file.model_sha256 = sha256_file(config_.model_path);
        // the arguments completed with their defaults: the recipe stays the same if those change
        file.weight_quantizer = {config_.weight_quantizer.name,
                                 evaluator_.weight_cache().quantizer().args()};
        file.activation_calibration = config_.activation_calibration;
        file.policy = chosen.evaluation.policy;
        file.metrics = metrics_from_costs(result_.chosen_test->costs);
        file.metrics->accuracy = result_.chosen_test->accuracy_percent;
        file.metrics->split = split_name(Split::test);
        write_policy_file((dir_ / policy_file_name).string(), file);
        export_chosen(file);
    }

    // model.q.onnx: the chosen policy as ONNX QDQ, with the calibration the run scored it with.
    void export_chosen(const PolicyFile& file) {
        export_quantized_onnx(config_.graph, file.policy, evaluator_.weight_cache().quantizer(),
                              evaluator_.calibration(),
                              export_info_of(file, config_.calibration_images),
                              (dir_ / quantized_model_name).string());
    }

    // Uniform baselines (no pins: the policy a constraint such as `W4A4` refers to) on both
    // splits, one parallel evaluate call per split for those the archive lacks.
    void score_baselines() {
        for (const UniformBits& bits : config_.baselines)
            result_.baselines.push_back(
                {bits, BitPolicy::uniform(config_.graph, bits.weight_bits, bits.activation_bits), {}, {}});
        for (Split split : {Split::validation, Split::test}) {
            std::vector<BitPolicy> missing;
            std::vector<size_t> where;
            for (size_t i = 0; i < result_.baselines.size(); ++i) {
                BaselineResult& b = result_.baselines[i];
                const std::string key = uniform_bits_name(b.bits) + "/" + split_name(split);
                if (auto it = previous_.baselines.find(key); it != previous_.baselines.end()) {
                    (split == Split::test ? b.test : b.validation) = it->second;
                } else {
                    missing.push_back(b.policy);
                    where.push_back(i);
                }
            }
            if (missing.empty()) continue;
            const std::vector<Score> scores = scorer_.score(missing, split);
            for (size_t k = 0; k < scores.size(); ++k) {
                BaselineResult& b = result_.baselines[where[k]];
                (split == Split::test ? b.test : b.validation) = scores[k];
                writer_.baseline(uniform_bits_name(b.bits), b.policy, scores[k]);
            }
        }
    }

    Clock::time_point start_ = Clock::now(); // first: elapsed time includes the set-up
    const RunConfig& config_;
    fs::path dir_;
    ArchiveContents previous_;
    ArchiveWriter writer_;
    Progress progress_;
    Evaluator& evaluator_;
    CandidateScorer& scorer_; // the batches and baselines (the evaluator, or spread over ranks)
    Dataset train_images_; // for policies that train (PolicyInfo::trains), else empty
    std::vector<Evaluation> progress_best_; // the progress line's best point (0 or 1)
    size_t progress_reported_ = 0;          // records already looked at for it
    RunResult result_;
    double elapsed_offset_ = 0.0;
};

} // namespace

// Everything that can be checked before the run directory is created is: the directory's state,
// the data, the model against the data, the calibration (in the evaluator). Only then is the
// directory created and locked, and, under the lock, the archive read and its header checked.
std::unique_ptr<Evaluator> make_run_evaluator(const RunConfig& config, const RunOptions& options,
                                              bool warn) {
    return std::make_unique<Evaluator>(config.graph, config.model_path, load_data(config, warn),
                                       evaluator_options(config, options));
}

RunResult run_search(const RunConfig& config, const RunOptions& options) {
    refuse_if_busy(config.output_dir);
    if (!options.resume) refuse_existing_run(config);
    EvaluationData data = load_data(config, true);
    const ArchiveHeader header = run_header(config, data);
    Dataset train_images; // for policies that train, before the directory exists too
    if (const PolicyInfo* info = find_policy(config.policy_name); info && info->trains)
        train_images = load_split(config.data, Split::train, config.calibration_images,
                                  Tensor::count(config.graph.shapes.at(config.graph.output)));
    Evaluator evaluator(config.graph, config.model_path, std::move(data),
                        evaluator_options(config, options));
    const std::unique_ptr<CandidateScorer> scorer = options.make_scorer
                                                        ? options.make_scorer(evaluator)
                                                        : std::make_unique<LocalScorer>(evaluator);
    const RunDirectory dir(config.output_dir);
    const InterruptScope interrupts;
    ArchiveContents previous = earlier_contents(config, dir, options.resume, header);
    return SearchRun(config, options, evaluator, *scorer, dir, std::move(previous), header,
                     std::move(train_images))
        .run();
}

} // namespace mps
