#pragma once
// SearchPolicy: the interface every search policy implements, its declared parameters, and the
// registry that maps the run config's `policy: {name: ...}` to an implementation.
//
// The run loop drives a policy in rounds: propose() a batch, the loop scores every candidate of
// the batch on the validation split (in parallel) and hands all of them back in order to
// observe(), and so on until propose() returns an empty batch or the run's budget is spent.
// A policy never touches files, the clock or the command line: given the same context (seed
// included) and the same observed scores it proposes the same batches. The run loop's resume
// relies on this: it replays a killed run's archive through a fresh policy.
//
// Adding a policy: one file in policies/ defining `PolicyInfo <name>_policy_info()` and one line
// in policies/registry.cpp.
#include "evaluator/data/dataset.h"
#include "evaluator/engine/quantized_network.h"
#include "evaluator/ir/graph.h"
#include "evaluator/quant/quantizer.h"
#include "policies/search_space.h"

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <variant>
#include <vector>

namespace mps {

// One parameter a policy accepts under the config's `policy:` key.
struct ParamSpec {
    enum class Kind { integer, real, boolean, text };
    std::string name;
    Kind kind = Kind::integer;
    std::string default_value;        // as it would be written in YAML ("kl", "4", "0.5", "true")
    std::optional<double> min, max;   // inclusive range of integer and real parameters
    std::vector<std::string> choices; // the values a text parameter may take (empty: any)
    std::string help;                 // one line for docs and --help
};

// Builders for the ParamSpecs a policy declares.
ParamSpec integer_param(std::string name, std::string default_value, double min, double max,
                        std::string help);
ParamSpec real_param(std::string name, std::string default_value, double min, double max,
                     std::string help);
ParamSpec boolean_param(std::string name, std::string default_value, std::string help);
ParamSpec text_param(std::string name, std::string default_value,
                     std::vector<std::string> choices, std::string help);

using ParamValue = std::variant<int64_t, double, bool, std::string>;

// A policy's parameter values, checked against its ParamSpecs, defaults filled in.
class ParamValues {
public:
    ParamValues() = default;
    explicit ParamValues(std::map<std::string, ParamValue> values) : values_(std::move(values)) {}
    // Typed access; throws mps::Error naming the parameter when it is absent or of another kind.
    int64_t integer(const std::string& name) const;
    double real(const std::string& name) const;
    bool boolean(const std::string& name) const;
    const std::string& text(const std::string& name) const;
    const std::map<std::string, ParamValue>& all() const { return values_; }
    bool operator==(const ParamValues&) const = default;

private:
    std::map<std::string, ParamValue> values_;
};

// Parses `text` as a value of `spec` (range and choices checked); throws mps::Error with a message
// that names the parameter, the expectation and the value ("expected an integer in [1, 8]").
ParamValue parse_param(const ParamSpec& spec, const std::string& text);
// Every spec's default, parsed.
ParamValues default_params(std::span<const ParamSpec> specs);
// ParamValue as text (for reports and the archive header): 4, 0.5, true, kl.
std::string param_to_string(const ParamValue& value);

// A candidate of a resumed run's archive (search/archive.h), in proposal order.
struct ArchivedCandidate {
    std::string stage;                  // Proposal::stage of its batch
    BitPolicy policy;
    std::optional<double> own_accuracy; // SearchPolicy::own_accuracy(), when it gave one
};

// Everything a policy knows about its run.
struct PolicyContext {
    const Graph* graph = nullptr;   // BN-folded, shapes inferred; outlives the policy
    SearchSpace space;
    ParamValues params;             // validated, defaults filled
    uint64_t seed = 1;
    Objective objective = Objective::accuracy;
    Score reference;                // FP32 (W32A32) on the validation split
    QuantizerSpec weight_quantizer{default_weight_quantizer, {}}; // what the evaluator uses
    int64_t max_evaluations = 0;    // the run's evaluation budget (policies may plan with it)
    int workers = 1;                // batches of at least this many keep every worker busy
    // Data for policies that learn by gradient (PolicyInfo::trains), else null; all outlive the
    // policy. The validation images are the ones the run scores candidates on.
    const Dataset* train_images = nullptr;
    const Dataset* validation_images = nullptr;
    const Calibration* calibration = nullptr; // the evaluator's, of `graph`
    // A resumed run: the archive's candidates, which the run loop hands back instead of
    // evaluating them again; empty for a fresh run. A policy whose candidates are costly to
    // compute (bayesian_bits trains one per mu) may take them from here when the stage it would
    // give matches; the run loop still checks every candidate against the archive.
    std::vector<ArchivedCandidate> archived;
};

// A batch of candidates and the stage that produced them ("phase1", "descent", "refine",
// "random", ...), recorded with every evaluation in the archive and shown in the report.
struct Proposal {
    std::vector<BitPolicy> candidates;
    std::string stage;
};

class SearchPolicy {
public:
    virtual ~SearchPolicy() = default;
    // At most `limit` (>= 1) candidates, each inside the context's SearchSpace. An empty batch
    // means the policy has finished. Candidates may repeat earlier ones (the loop scores them
    // again; scores are deterministic).
    virtual Proposal propose(int64_t limit) = 0;
    // The scores of every candidate of the last proposal, in order.
    virtual void observe(std::span<const Evaluation> scored) = 0;
    // The reward the policy gave each candidate of the last observed batch, in order
    // (reinforcement-learning policies; the archive and the report record it). Empty when the
    // policy has no notion of reward.
    virtual std::vector<double> rewards() const { return {}; }
    // Short progress text for the progress line ("phase 1: 40/96"); may be empty.
    virtual std::string status() const { return {}; }
    // The policy's own accuracy (percent, validation split) of each candidate of the last
    // observed batch, in order, when it measures one besides the evaluator's: bayesian_bits
    // scores its thresholded gates with the learned ranges on the Bayesian Bits grid. The archive
    // and the report record it next to the evaluator's figure. Empty otherwise.
    virtual std::vector<double> own_accuracy() const { return {}; }
};

struct PolicyInfo {
    std::string name;                // the config's policy.name
    std::string summary;             // one line
    std::vector<ParamSpec> params;   // everything policy: accepts besides `name`
    std::unique_ptr<SearchPolicy> (*make)(const PolicyContext& context) = nullptr;
    bool trains = false;             // needs the context's training data (train split)
};

// Every registered policy, in registry order.
std::span<const PolicyInfo> registered_policies();
// The policy called `name`, or nullptr.
const PolicyInfo* find_policy(const std::string& name);
// Builds the policy `name` (mps::Error listing the registered names when there is none).
std::unique_ptr<SearchPolicy> make_policy(const std::string& name, const PolicyContext& context);

} // namespace mps
