// Run configuration: a full config read into RunConfig with defaults filled, every class of
// problem reported with its exact line and key path, several problems at once in file order,
// "W4A4" limits resolved to the uniform policy's costs, and every committed config loading.
#include "evaluator/io/onnx_io.h"
#include "evaluator/ir/costs.h"
#include "search/run_config.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <unistd.h>

using namespace mps;
namespace fs = std::filesystem;

namespace {

const std::string source_dir = MPSEARCH_SOURCE_DIR;
const std::string lenet5 = source_dir + "/models/lenet5.onnx";

// The smallest valid config: the committed lenet5 and the uniform policy.
std::string minimal() {
    return "model: " + lenet5 + "\n"   // 1
           "policy: {name: uniform}\n"; // 2
}

// Every problem of `text`; fails the test when it parses.
std::vector<ConfigProblem> problems_of(const std::string& text) {
    try {
        parse_run_config(text, "run.yaml");
    } catch (const ConfigError& e) {
        CHECK(e.file() == "run.yaml");
        return e.problems();
    }
    FAIL("the config was accepted:\n" << text);
    return {};
}

// The single problem of `text`.
ConfigProblem problem_of(const std::string& text) {
    const std::vector<ConfigProblem> problems = problems_of(text);
    REQUIRE_MESSAGE(problems.size() == 1, ConfigError("run.yaml", problems).what());
    return problems[0];
}

bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

Graph load_lenet5() {
    Graph graph = import_onnx(lenet5);
    fold_batch_norm(graph);
    return graph;
}

} // namespace

TEST_CASE("run config: did_you_mean picks the closest name within a third of the word") {
    const std::vector<std::string> names{"granularity", "constraints", "baselines", "budget"};
    CHECK(did_you_mean("granularty", names) == "granularity");
    CHECK(did_you_mean("constriants", names) == "constraints"); // a swap is two edits
    CHECK(did_you_mean("budgte", names) == "budget");
    CHECK(did_you_mean("bits", names).empty());
    CHECK(did_you_mean("x", std::vector<std::string>{"y"}) == "y"); // distance 1 always allowed
    CHECK(did_you_mean("anything", std::vector<std::string>{}).empty());
}

TEST_CASE("run config: a full config reads into RunConfig") {
    const std::string text = "model: " + lenet5 + "\n"
                             "data: {dir: /usr/share/datasets/fashion-mnist,"
                             " calibration_images: 500, validation_images: 2000}\n"
                             "quantizers:\n"
                             "  weights: {name: kmeans, iterations: 50}\n"
                             "  activations: {name: percentile, percentile: 99.9}\n"
                             "  path: fake\n"
                             "granularity: layer\n"
                             "bits: {weights: [2, 8, 4], activations: [4, 8], pruning: false}\n"
                             "pinned: {first: W8A8, last: W8A8, fc2: W4A8}\n"
                             "constraints: {max_relative_bitops: 0.25, max_weight_bytes: 40000,"
                             " max_macs: 1000000, max_accuracy_drop: 1.5}\n"
                             "objective: weight_bytes\n"
                             "baselines: [W8A8, W4A4]\n"
                             "policy: {name: random, fit_budget: false, prune_probability: 0.25}\n"
                             "budget: {max_evaluations: 50, max_seconds: 90.5, batch: 8}\n"
                             "seed: 7\n"
                             "workers: 1\n"
                             "output: runs/here\n";
    const RunConfig c = parse_run_config(text, "configs/full.yaml");
    CHECK(c.source_path == "configs/full.yaml");
    CHECK(c.source_text == text);
    CHECK(c.model == lenet5);
    CHECK(c.model_path == lenet5);
    const std::vector<const Node*> layers = quantizable_layers(c.graph);
    REQUIRE(layers.size() == 5);
    CHECK(c.data.idx_dir == "/usr/share/datasets/fashion-mnist");
    CHECK(c.calibration_images == 500);
    CHECK(c.validation_images == 2000);
    CHECK(c.weight_quantizer == QuantizerSpec{"kmeans", {{"iterations", "50"}}});
    CHECK(c.activation_calibration == QuantizerSpec{"percentile", {{"percentile", "99.9"}}});
    CHECK(c.path == ExecutionPath::fake);
    CHECK(c.space.granularity == Granularity::layer);
    CHECK(c.space.weight_bits == std::vector<int>{8, 4, 2}); // sorted descending
    CHECK(c.space.activation_bits == std::vector<int>{8, 4});
    CHECK_FALSE(c.space.allow_pruning);
    REQUIRE(c.space.pinned.size() == 3);
    CHECK(c.space.pinned.at(layers.front()->name).weight_bits == 8);
    CHECK(c.space.pinned.at(layers.back()->name).activation_bits == 8);
    CHECK(c.space.pinned.at("fc2").weight_bits == 4);
    CHECK(c.space.pinned.at("fc2").activation_bits == 8);
    CHECK(c.space.constraints.max_relative_bitops == 0.25);
    CHECK(c.space.constraints.max_weight_bytes == 40000.0);
    CHECK(c.space.constraints.max_macs == 1000000);
    CHECK(c.space.constraints.max_accuracy_drop == 1.5);
    CHECK(c.objective == Objective::weight_bytes);
    REQUIRE(c.baselines.size() == 2);
    CHECK(c.baselines[1].weight_bits == 4);
    CHECK(c.baselines[1].activation_bits == 4);
    CHECK(c.policy_name == "random");
    CHECK_FALSE(c.policy_params.boolean("fit_budget"));
    CHECK(c.policy_params.real("prune_probability") == 0.25);
    CHECK(c.max_evaluations == 50);
    CHECK(c.max_seconds == 90.5);
    CHECK(c.batch == 8);
    CHECK(c.seed == 7);
    CHECK(c.workers == 1);
    CHECK(c.output_dir == "runs/here");
}

TEST_CASE("run config: defaults fill everything that is left out") {
    const RunConfig c = parse_run_config(minimal(), "some/dir/quick.yaml");
    CHECK(c.data.idx_dir == default_fashion_mnist_dir);
    CHECK(c.calibration_images == 1000);
    CHECK(c.validation_images == 5000);
    CHECK(c.weight_quantizer == QuantizerSpec{"uniform", {}});
    CHECK(c.activation_calibration == QuantizerSpec{"max", {}});
    CHECK(c.path == ExecutionPath::integer);
    CHECK(c.space.granularity == Granularity::kernel);
    CHECK(c.space.weight_bits == std::vector<int>{8, 6, 4, 3, 2});
    CHECK(c.space.activation_bits == std::vector<int>{8, 6, 4, 3, 2});
    CHECK_FALSE(c.space.allow_pruning);
    CHECK(c.space.pinned.empty());
    CHECK(c.space.constraints == Constraints{});
    CHECK(c.objective == Objective::accuracy);
    std::vector<int> baseline_bits;
    for (const UniformBits& b : c.baselines) {
        CHECK(b.weight_bits == b.activation_bits);
        baseline_bits.push_back(b.weight_bits);
    }
    CHECK(baseline_bits == std::vector<int>{8, 6, 4, 3, 2});
    CHECK(c.policy_name == "uniform");
    CHECK(c.max_evaluations == 200);
    CHECK_FALSE(c.max_seconds.has_value());
    CHECK(c.batch == 32);
    CHECK(c.seed == 1);
    CHECK(c.workers == 2);
    CHECK(c.output_dir == "runs/quick");

    SUBCASE("default baselines: the bit-widths both lists allow, highest first") {
        const RunConfig d = parse_run_config(
            minimal() + "bits: {weights: [2, 8, 4], activations: [4, 6, 8]}\n", "x.yaml");
        REQUIRE(d.baselines.size() == 2);
        CHECK(d.baselines[0].weight_bits == 8);
        CHECK(d.baselines[1].activation_bits == 4);
    }
    SUBCASE("default objective: relative_bitops when the only constraint is the accuracy drop") {
        CHECK(parse_run_config(minimal() + "constraints: {max_accuracy_drop: 1}\n", "x.yaml")
                  .objective == Objective::relative_bitops);
        CHECK(parse_run_config(minimal() + "constraints: {max_accuracy_drop: 1, max_macs: 1e9}\n",
                               "x.yaml")
                  .objective == Objective::accuracy);
    }
    SUBCASE("policy parameters take their defaults; `policy: name` is short for {name: name}") {
        const RunConfig g = parse_run_config(
            "model: " + lenet5 + "\npolicy: {name: greedy_sensitivity, lookahead: 3}\n", "x.yaml");
        CHECK(g.policy_params.text("metric") == "kl");
        CHECK(g.policy_params.integer("lookahead") == 3);
        CHECK(g.policy_params.boolean("refine"));
        const RunConfig r = parse_run_config("model: " + lenet5 + "\npolicy: random\n", "x.yaml");
        CHECK(r.policy_name == "random");
        CHECK(r.policy_params.boolean("fit_budget"));
    }
}

TEST_CASE("run config: a zoo name resolves under $MPSEARCH_MODELS") {
    const char* old = std::getenv("MPSEARCH_MODELS");
    const std::string saved = old ? old : "";
    ::setenv("MPSEARCH_MODELS", (source_dir + "/models").c_str(), 1);
    const RunConfig c = parse_run_config("model: lenet5\npolicy: uniform\n", "x.yaml");
    CHECK(c.model == "lenet5");
    CHECK(c.model_path == source_dir + "/models/lenet5.onnx");

    ::setenv("MPSEARCH_MODELS", "/nonexistent-models", 1);
    const ConfigProblem p = problem_of("policy: uniform\nmodel: lenet5\n");
    CHECK(p.line == 2);
    CHECK(p.key_path == "model");
    CHECK(contains(p.message, "/nonexistent-models"));
    if (old)
        ::setenv("MPSEARCH_MODELS", saved.c_str(), 1);
    else
        ::unsetenv("MPSEARCH_MODELS");
}

TEST_CASE("run config: malformed YAML is one problem at the parser's mark") {
    const ConfigProblem p = problem_of("model: x\n"
                                       "bits: {weights: [8, 4}\n" // 2: ']' missing
                                       "seed: nonsense\n");
    CHECK(p.line == 2);
    CHECK(p.column > 0);
    CHECK(p.key_path.empty());
    CHECK(contains(p.message, "malformed YAML"));

    // A file that ends inside a bracket: at the end of its last line, not on the line after.
    const ConfigProblem unclosed = problem_of("policy: uniform\nmodel: [unclosed\n");
    CHECK(unclosed.line == 2);
    CHECK(unclosed.column == 17);

    const ConfigProblem empty = problem_of("# nothing but a comment\n");
    CHECK(contains(empty.message, "empty"));
    const ConfigProblem list = problem_of("- model\n- policy\n");
    CHECK(list.line == 1);
    CHECK(contains(list.message, "not a mapping"));
}

TEST_CASE("run config: unknown keys are reported with the closest known key") {
    SUBCASE("top level") {
        const ConfigProblem p = problem_of(minimal() + "granularty: layer\n"); // 3
        CHECK(p.line == 3);
        CHECK(p.column == 1);
        CHECK(p.key_path == "granularty");
        CHECK(contains(p.message, "did you mean 'granularity'?"));
    }
    SUBCASE("nested") {
        const ConfigProblem p = problem_of(minimal() + "bits:\n"      // 3
                                                       "  weigths: [8, 4]\n"); // 4
        CHECK(p.line == 4);
        CHECK(p.column == 3);
        CHECK(p.key_path == "bits.weigths");
        CHECK(contains(p.message, "did you mean 'weights'?"));
    }
    SUBCASE("nothing close: the known keys are listed") {
        const ConfigProblem p = problem_of(minimal() + "data: {folder: /tmp}\n");
        CHECK(p.key_path == "data.folder");
        CHECK_FALSE(contains(p.message, "did you mean"));
        CHECK(contains(p.message, "dir, calibration_images, validation_images"));
    }
    SUBCASE("a key given twice") {
        const ConfigProblem p = problem_of(minimal() + "seed: 1\nseed: 2\n");
        CHECK(p.line == 4);
        CHECK(p.key_path == "seed");
        CHECK(contains(p.message, "twice"));
    }
}

TEST_CASE("run config: values of the wrong type") {
    struct Case {
        std::string line, key_path, expected;
    };
    const std::vector<Case> cases{
        {"seed: abc", "seed", "expected an integer"},
        {"workers: +-2", "workers", "got '+-2'"}, // one sign at most (number_text.h)
        {"bits: {weights: [8, ++4]}", "bits.weights[1]", "got '++4'"},
        {"workers: [2]", "workers", "got a list"},
        {"bits: {weights: 8}", "bits.weights", "expected a non-empty list"},
        {"bits: {weights: {a: 1}}", "bits.weights", "got a mapping"},
        {"bits: {weights: [8, four]}", "bits.weights[1]", "got 'four'"},
        {"bits: {pruning: maybe}", "bits.pruning", "expected true or false"},
        {"data: [1, 2]", "data", "expected a mapping"},
        {"budget: {max_seconds: soon}", "budget.max_seconds", "expected a number > 0"},
        {"constraints: {max_relative_bitops: low}", "constraints.max_relative_bitops",
         "or a uniform setting such as W4A4"},
        {"pinned: {first: [8, 8]}", "pinned.first", "uniform bit setting"},
        {"baselines: W8A8", "baselines", "expected a list"},
        {"output: {dir: x}", "output", "expected a directory path"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.line);
        const ConfigProblem p = problem_of(minimal() + c.line + "\n");
        CHECK(p.line == 3);
        CHECK(p.key_path == c.key_path);
        CHECK(contains(p.message, c.expected));
    }
}

TEST_CASE("run config: values out of range") {
    struct Case {
        std::string line, key_path, expected;
    };
    const std::vector<Case> cases{
        {"bits: {weights: [8, 6, 9]}", "bits.weights[2]", "bit-width 9 is not allowed"},
        {"bits: {weights: [8, 0]}", "bits.weights[1]", "bits.pruning"},
        {"bits: {activations: [8, 12]}", "bits.activations[1]", "bit-width 12 is not allowed"},
        {"bits: {weights: [8, 4, 8]}", "bits.weights[2]", "appears twice (also bits.weights[0])"},
        {"bits: {weights: []}", "bits.weights", "an empty list"},
        {"data: {validation_images: 6000}", "data.validation_images", "[1, 5000]"},
        {"data: {calibration_images: 0}", "data.calibration_images", "[1, 55000]"},
        {"data: {dir: /nonexistent/fashion}", "data.dir", "does not exist"},
        {"workers: 0", "workers", "[1, 256]"},
        {"seed: -1", "seed", "non-negative"},
        {"budget: {batch: 0}", "budget.batch", "[1, 4096]"},
        {"budget: {max_seconds: 0}", "budget.max_seconds", "> 0"},
        {"constraints: {max_relative_bitops: 0}", "constraints.max_relative_bitops", "> 0"},
        {"constraints: {max_weight_bytes: -5}", "constraints.max_weight_bytes", "> 0"},
        {"constraints: {max_macs: 0}", "constraints.max_macs", "integer >= 1"},
        {"constraints: {max_accuracy_drop: -0.5}", "constraints.max_accuracy_drop", ">= 0"},
        {"constraints: {max_relative_bitops: W9A4}", "constraints.max_relative_bitops", "W9A4"},
        {"pinned: {first: W0A8}", "pinned.first", "prunes every weight"},
        {"baselines: [W8A8, W4A4, W8A8]", "baselines[2]", "appears twice"},
        {"granularity: layer\nbits: {pruning: true}", "bits.pruning", "granularity kernel"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.line);
        const ConfigProblem p = problem_of(minimal() + c.line + "\n");
        CHECK(p.line == (c.key_path == "bits.pruning" ? 4 : 3));
        CHECK(p.key_path == c.key_path);
        CHECK(contains(p.message, c.expected));
    }
}

TEST_CASE("run config: missing required keys are reported at their parent") {
    SUBCASE("model") {
        const ConfigProblem p = problem_of("# a comment first\n"
                                           "policy: uniform\n"); // 2: the root mapping starts here
        CHECK(p.line == 2);
        CHECK(p.column == 1);
        CHECK(p.key_path == "model");
        CHECK(contains(p.message, "missing required key 'model'"));
    }
    SUBCASE("policy") {
        const ConfigProblem p = problem_of("model: " + lenet5 + "\n");
        CHECK(p.line == 1);
        CHECK(p.key_path == "policy");
    }
    SUBCASE("policy.name") {
        const ConfigProblem p = problem_of("model: " + lenet5 + "\n"
                                           "policy:\n"             // 2
                                           "  lookahead: 2\n");    // 3: the mapping starts here
        CHECK(p.line == 3);
        CHECK(p.key_path == "policy.name");
        CHECK(contains(p.message, "uniform, random"));
    }
    SUBCASE("quantizers.weights.name") {
        const ConfigProblem p = problem_of(minimal() + "quantizers: {weights: {iterations: 5}}\n");
        CHECK(p.line == 3);
        CHECK(p.key_path == "quantizers.weights.name");
    }
}

TEST_CASE("run config: unknown policy, bad and unknown policy parameters") {
    const std::string model = "model: " + lenet5 + "\n";
    SUBCASE("unknown policy lists the registered ones") {
        const ConfigProblem p = problem_of(model + "policy: {name: randon}\n");
        CHECK(p.line == 2);
        CHECK(p.column == 16);
        CHECK(p.key_path == "policy.name");
        CHECK(contains(p.message, "did you mean 'random'?"));
        for (const PolicyInfo& info : registered_policies()) CHECK(contains(p.message, info.name));
    }
    SUBCASE("a value parse_param refuses") {
        const ConfigProblem p = problem_of(model + "policy:\n"
                                                   "  name: random\n"
                                                   "  prune_probability: 1.5\n"); // 4
        CHECK(p.line == 4);
        CHECK(p.column == 22);
        CHECK(p.key_path == "policy.prune_probability");
        CHECK(contains(p.message, "[0, 1]"));
        CHECK(contains(p.message, "1.5"));
    }
    SUBCASE("a boolean parameter given a number") {
        const ConfigProblem p = problem_of(model + "policy: {name: random, fit_budget: 3}\n");
        CHECK(p.key_path == "policy.fit_budget");
        CHECK(contains(p.message, "boolean"));
    }
    SUBCASE("an unknown parameter, with the closest one") {
        const ConfigProblem p = problem_of(model + "policy:\n"
                                                   "  name: random\n"
                                                   "  fit_budgte: true\n"); // 4
        CHECK(p.line == 4);
        CHECK(p.column == 3);
        CHECK(p.key_path == "policy.fit_budgte");
        CHECK(contains(p.message, "did you mean 'fit_budget'?"));
        CHECK(contains(p.message, "fit_budget, prune_probability"));
    }
    SUBCASE("a policy without parameters") {
        const ConfigProblem p = problem_of(model + "policy: {name: uniform, seed: 3}\n");
        CHECK(p.key_path == "policy.seed");
        CHECK(contains(p.message, "it takes none"));
    }
}

TEST_CASE("run config: unknown quantizer, calibration rule, argument and path") {
    struct Case {
        std::string line;
        int column;
        std::string key_path, expected;
    };
    const std::vector<Case> cases{
        {"quantizers: {weights: unifrom}", 23, "quantizers.weights", "did you mean 'uniform'?"},
        {"quantizers: {weights: {name: kmean}}", 30, "quantizers.weights.name",
         "did you mean 'kmeans'?"},
        {"quantizers: {weights: {name: kmeans, iterations: lots}}", 38,
         "quantizers.weights.iterations", "iterations"},
        {"quantizers: {weights: {name: uniform, bits: 4}}", 39, "quantizers.weights.bits",
         "unknown argument 'bits'"},
        {"quantizers: {activations: maximum}", 27, "quantizers.activations",
         "max, percentile, mse"},
        {"quantizers: {activations: {name: percentile, percentile: 0}}", 46,
         "quantizers.activations.percentile", "percentile"},
        {"quantizers: {path: integer}", 20, "quantizers.path", "use one of: int, fake"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.line);
        const ConfigProblem p = problem_of(minimal() + c.line + "\n");
        CHECK(p.line == 3);
        CHECK(p.column == c.column);
        CHECK(p.key_path == c.key_path);
        CHECK(contains(p.message, c.expected));
    }
}

TEST_CASE("run config: pinned layers resolve against the model") {
    const Graph graph = load_lenet5();
    const std::vector<const Node*> layers = quantizable_layers(graph);
    SUBCASE("first and last are the first and last quantizable layers") {
        const RunConfig c = parse_run_config(minimal() + "pinned: {first: W8A8, last: W6A8}\n",
                                             "x.yaml");
        CHECK(c.space.pinned.size() == 2);
        CHECK(c.space.pinned.at(layers.front()->name).weight_bits == 8);
        CHECK(c.space.pinned.at(layers.back()->name).weight_bits == 6);
    }
    SUBCASE("an unknown layer, with the closest layer name") {
        const ConfigProblem p = problem_of(minimal() + "pinned:\n"         // 3
                                                       "  first: W8A8\n"   // 4
                                                       "  conv9: W4A8\n"); // 5
        CHECK(p.line == 5);
        CHECK(p.column == 3);
        CHECK(p.key_path == "pinned.conv9");
        CHECK(contains(p.message, "unknown layer 'conv9'; did you mean 'conv1'?"));
    }
    SUBCASE("a node that takes no bits") {
        std::string relu;
        for (const Node& node : graph.nodes)
            if (node.op == Op::relu && relu.empty()) relu = node.name;
        REQUIRE_FALSE(relu.empty());
        const ConfigProblem p = problem_of(minimal() + "pinned: {" + relu + ": W4A4}\n");
        CHECK(p.key_path == "pinned." + relu);
        CHECK(contains(p.message, "is a relu node"));
    }
    SUBCASE("one layer pinned twice") {
        const ConfigProblem p = problem_of(minimal() + "pinned:\n"
                                                       "  first: W8A8\n"
                                                       "  " + layers.front()->name + ": W4A4\n");
        CHECK(p.line == 5);
        CHECK(contains(p.message, "pinned twice (also as 'first')"));
    }
}

TEST_CASE("run config: W4A4 limits are the costs of that uniform policy on the model") {
    const Graph graph = load_lenet5();
    const Costs w4a4 = compute_costs(graph, BitPolicy::uniform(graph, 4, 4));
    const Costs w3a8 = compute_costs(graph, BitPolicy::uniform(graph, 3, 8));
    const RunConfig c = parse_run_config(
        minimal() + "pinned: {last: W8A8}\n"
                    "constraints: {max_relative_bitops: W4A4, max_weight_bytes: w3a8}\n",
        "x.yaml");
    CHECK(c.space.constraints.max_relative_bitops == w4a4.relative_bitops()); // pins don't count
    CHECK(c.space.constraints.max_weight_bytes == w3a8.weight_bytes());
    const BitPolicy pinned_w4a4 = BitPolicy::per_layer(
        graph, {{4, 4}, {4, 4}, {4, 4}, {4, 4}, {8, 8}});
    CHECK(compute_costs(graph, pinned_w4a4).relative_bitops() > w4a4.relative_bitops());
    CHECK(w4a4.relative_bitops() == doctest::Approx(1.0 / 64).epsilon(1e-12));
}

TEST_CASE("run config: cost limits below the cheapest policy of the space are impossible") {
    const Graph graph = load_lenet5();
    const std::vector<const Node*> layers = quantizable_layers(graph);
    // The cheapest policy: W8A8 at the pinned first layer, W2A2 elsewhere (computed here by hand
    // from per-layer bits, independently of SearchSpace::lowest).
    std::vector<UniformBits> bits(layers.size(), UniformBits{2, 2});
    bits.front() = UniformBits{8, 8};
    const Costs cheapest = compute_costs(graph, BitPolicy::per_layer(graph, bits));
    const std::string space = "bits: {weights: [8, 4, 2], activations: [8, 4, 2]}\n" // 3
                              "pinned: {first: W8A8}\n";                            // 4
    const auto with_limit = [&](const std::string& key, double value) {
        char number[64];
        std::snprintf(number, sizeof number, "%.17g", value);
        return minimal() + space + "constraints:\n  " + key + ": " + number + "\n"; // 6
    };

    SUBCASE("relative BitOPs") {
        parse_run_config(with_limit("max_relative_bitops", cheapest.relative_bitops()), "x.yaml");
        const ConfigProblem p =
            problem_of(with_limit("max_relative_bitops", cheapest.relative_bitops() * 0.99));
        CHECK(p.line == 6);
        CHECK(p.column == 24);
        CHECK(p.key_path == "constraints.max_relative_bitops");
        CHECK(contains(p.message, "impossible constraint"));
        CHECK(contains(p.message, "W2A2, pinned layers at their pins"));
    }
    SUBCASE("weight bytes") {
        parse_run_config(with_limit("max_weight_bytes", cheapest.weight_bytes()), "x.yaml");
        const ConfigProblem p =
            problem_of(with_limit("max_weight_bytes", cheapest.weight_bytes() - 1));
        CHECK(p.line == 6);
        CHECK(p.key_path == "constraints.max_weight_bytes");
    }
    SUBCASE("MACs: without pruning every kernel counts") {
        const ConfigProblem p =
            problem_of(with_limit("max_macs", static_cast<double>(cheapest.macs - 1)));
        CHECK(p.key_path == "constraints.max_macs");
        CHECK(contains(p.message, "only pruning lowers MACs"));
    }
    SUBCASE("with pruning at kernel granularity only the pinned layers are a floor") {
        // Everything but the first layer pruned.
        std::vector<UniformBits> pruned(layers.size(), UniformBits{0, 2});
        pruned.front() = UniformBits{8, 8};
        const Costs floor = compute_costs(graph, BitPolicy::per_layer(graph, pruned));
        REQUIRE(floor.relative_bitops() < cheapest.relative_bitops());
        const std::string pruning = minimal() +
                                    "bits: {weights: [8, 4, 2], activations: [8, 4, 2], "
                                    "pruning: true}\n"
                                    "pinned: {first: W8A8}\n"
                                    "constraints: {max_relative_bitops: ";
        char number[64];
        // Between the two floors: only reachable by pruning.
        std::snprintf(number, sizeof number, "%.17g",
                      (floor.relative_bitops() + cheapest.relative_bitops()) / 2);
        parse_run_config(pruning + number + "}\n", "x.yaml");
        std::snprintf(number, sizeof number, "%.17g", floor.relative_bitops() * 0.99);
        const ConfigProblem p = problem_of(pruning + number + "}\n");
        CHECK(p.line == 5);
        CHECK(contains(p.message, "pinned layers alone"));
    }
    SUBCASE("a W-setting limit below the space's floor") {
        const ConfigProblem p = problem_of(minimal() +
                                           "bits: {weights: [8], activations: [8]}\n"
                                           "constraints: {max_relative_bitops: W4A4}\n");
        CHECK(p.line == 4);
        CHECK(contains(p.message, "W4A4 (= 0.01562) is below 0.0625,"));
    }
    SUBCASE("a broken bits list still gets a floor, one that assumes it reaches 1 bit") {
        std::vector<UniformBits> one_bit(layers.size(), UniformBits{1, 2});
        one_bit.front() = UniformBits{8, 8};
        const double w1_floor = compute_costs(graph, BitPolicy::per_layer(graph, one_bit))
                                    .relative_bitops();
        REQUIRE(w1_floor < cheapest.relative_bitops());
        const auto broken = [&](double limit) {
            char number[64];
            std::snprintf(number, sizeof number, "%.17g", limit);
            return minimal() + "bits: {weights: [8, 4, x2], activations: [8, 4, 2]}\n" // 3
                               "pinned: {first: W8A8}\n"                                 // 4
                               "constraints: {max_relative_bitops: " + number + "}\n";  // 5
        };
        // Between the 1-bit and the 2-bit floors: maybe meant, so only the list is a problem.
        const ConfigProblem p = problem_of(broken((w1_floor + cheapest.relative_bitops()) / 2));
        CHECK(p.key_path == "bits.weights[2]");
        const std::vector<ConfigProblem> both = problems_of(broken(w1_floor * 0.99));
        REQUIRE(both.size() == 2);
        CHECK(both[0].key_path == "bits.weights[2]");
        CHECK(both[1].line == 5);
        CHECK(both[1].key_path == "constraints.max_relative_bitops");
        CHECK(contains(both[1].message, "W1A2"));
    }
    SUBCASE("a budget of no evaluations") {
        const ConfigProblem p = problem_of(minimal() + "budget: {max_evaluations: 0}\n");
        CHECK(p.line == 3);
        CHECK(p.key_path == "budget.max_evaluations");
        CHECK(contains(p.message, "at least one evaluation"));
    }
}

TEST_CASE("run config: a model that cannot be loaded is one problem; model checks are skipped") {
    const std::vector<ConfigProblem> problems =
        problems_of("policy: uniform\n"
                    "model: /nonexistent/model.onnx\n"                // 2
                    "pinned: {conv99: W8A8}\n"                        // skipped: needs the model
                    "constraints: {max_relative_bitops: W4A4}\n"      // skipped too
                    "workers: 0\n");                                  // 5: still reported
    REQUIRE(problems.size() == 2);
    CHECK(problems[0].line == 2);
    CHECK(problems[0].column == 8);
    CHECK(problems[0].key_path == "model");
    CHECK(contains(problems[0].message, "cannot load the model"));
    CHECK(contains(problems[0].message, "/nonexistent/model.onnx"));
    CHECK(problems[1].key_path == "workers");
}

TEST_CASE("run config: every problem of a file is reported at once, in file order") {
    const std::string text = "policy:\n"                             // 1
                             "  name: greedy_sensitivity\n"          // 2
                             "  lookahead: 40\n"                     // 3
                             "model: " + lenet5 + "\n"               // 4
                             "seed: one\n"                           // 5
                             "bits:\n"                               // 6
                             "  weights: [8, 4, 4]\n"                // 7
                             "  activations: [8, 33]\n"              // 8
                             "pinned: {conv7: W8A8}\n"               // 9
                             "budget: {max_evaluations: 0}\n"        // 10
                             "outptu: runs/x\n";                     // 11
    try {
        parse_run_config(text, "bad.yaml");
        FAIL("accepted");
    } catch (const ConfigError& e) {
        const std::vector<ConfigProblem>& p = e.problems();
        REQUIRE(p.size() == 7);
        const std::vector<std::string> paths{"policy.lookahead", "seed", "bits.weights[2]",
                                             "bits.activations[1]", "pinned.conv7",
                                             "budget.max_evaluations", "outptu"};
        const std::vector<int> lines{3, 5, 7, 8, 9, 10, 11};
        const std::vector<int> columns{14, 7, 19, 20, 10, 27, 1}; // the value, or the key
        for (size_t i = 0; i < p.size(); ++i) {
            CAPTURE(paths[i]);
            CHECK(p[i].key_path == paths[i]);
            CHECK(p[i].line == lines[i]);
            CHECK(p[i].column == columns[i]);
        }
        // what(): one problem per line as <file>:<line>:<column>: <key path>: <message>.
        const std::string what = e.what();
        CHECK(what.rfind("bad.yaml:3:14: policy.lookahead: ", 0) == 0);
        CHECK(contains(what, "\nbad.yaml:11:1: outptu: unknown key 'outptu'; "
                             "did you mean 'output'?"));
        CHECK(std::count(what.begin(), what.end(), '\n') == 6);
    }
}

TEST_CASE("run config: load_run_config reads a file and names it in problems") {
    const fs::path dir = fs::temp_directory_path() / ("mpsearch_run_config_" +
                                                      std::to_string(::getpid()));
    fs::create_directories(dir);
    const std::string path = (dir / "trial.yaml").string();
    {
        std::ofstream out(path);
        out << minimal();
    }
    const RunConfig c = load_run_config(path);
    CHECK(c.source_path == path);
    CHECK(c.source_text == minimal());
    CHECK(c.output_dir == "runs/trial");
    {
        std::ofstream out(path);
        out << minimal() << "seed: x\n";
    }
    try {
        load_run_config(path);
        FAIL("accepted");
    } catch (const ConfigError& e) {
        CHECK(e.file() == path);
        CHECK(std::string(e.what()).rfind(path + ":3:7: seed: ", 0) == 0);
    }
    CHECK_THROWS_AS(load_run_config((dir / "missing.yaml").string()), Error);
    fs::remove_all(dir);
}

// configs/torchvision/<family>.yaml searches models/torchvision/<family>.onnx, which
// scripts/train_torchvision.py writes (not committed: 9 to 45 MB); until it exists, the config is
// read with the family's reduced-width fixture of tests/data/torchvision/ in its place.
void check_torchvision_config(const fs::path& file) {
    std::ifstream in(file);
    std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    const std::string family = file.stem().string();
    const std::string trained = "models/torchvision/" + family + ".onnx";
    const auto at = text.find("model: " + trained);
    REQUIRE(at != std::string::npos);
    const std::string model = fs::exists(source_dir + "/" + trained)
                                  ? source_dir + "/" + trained
                                  : source_dir + "/tests/data/torchvision/" + family + ".onnx";
    text.replace(at, 7 + trained.size(), "model: " + model);
    const RunConfig c = parse_run_config(text, file.string());
    CHECK(c.policy_name == "greedy_sensitivity");
    CHECK(c.output_dir == "runs/torchvision-" + family);
    CHECK(c.space.pinned.size() == 2u);
}

TEST_CASE("run config: every committed config under configs/ loads without problems") {
    std::vector<fs::path> files;
    for (const auto& entry : fs::recursive_directory_iterator(source_dir + "/configs"))
        if (entry.path().extension() == ".yaml") files.push_back(entry.path());
    std::sort(files.begin(), files.end());
    // quickstart + 4 models x (uniform, random, greedy_sensitivity)
    CHECK(files.size() >= 13);
    const char* old = std::getenv("MPSEARCH_MODELS");
    const std::string saved = old ? old : "";
    ::unsetenv("MPSEARCH_MODELS"); // zoo names resolve to the source tree's models/
    for (const fs::path& file : files) {
        CAPTURE(file.string());
        try {
            if (file.parent_path().filename() == "torchvision") {
                check_torchvision_config(file);
                continue;
            }
            const RunConfig c = load_run_config(file.string());
            CHECK(find_policy(c.policy_name) != nullptr);
            CHECK(c.max_evaluations >= 1);
            if (file.filename() != "quickstart.yaml") {
                // configs/<model>/<policy>.yaml runs <policy> on <model> into runs/<model>-<policy>
                CHECK(c.model == file.parent_path().filename().string());
                CHECK(c.policy_name == file.stem().string());
                CHECK(c.output_dir ==
                      "runs/" + c.model + "-" + c.policy_name);
                CHECK(c.validation_images == 5000);
                CHECK(c.seed == 1);
                // The last layer pinned at W8A8 everywhere, the first too where it does not eat
                // the budget (not on lenet5 and mobilenet_tiny, whose first convs are expensive).
                const std::string last = quantizable_layers(c.graph).back()->name;
                REQUIRE(c.space.pinned.count(last) == 1);
                CHECK(c.space.pinned.at(last).weight_bits == 8);
                const bool first_free = c.model == "lenet5" || c.model == "mobilenet_tiny";
                CHECK(c.space.pinned.size() == (first_free ? 1u : 2u));
            }
        } catch (const Error& e) {
            FAIL_CHECK(std::string(e.what()));
        }
    }
    if (old) ::setenv("MPSEARCH_MODELS", saved.c_str(), 1);
}
