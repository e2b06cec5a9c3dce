// Policy files: write -> read round trips, every rejection with its line and column, all
// problems of a file reported together, atomic writes; SHA-256 against the FIPS 180 test vectors.
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/io/policy_file.h"
#include "evaluator/io/yaml_problems.h"
#include "tests/graph_builders.h"

#include <doctest/doctest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <unistd.h>

using namespace mps;
namespace fs = std::filesystem;

namespace {

struct PolicyDir {
    fs::path path;
    PolicyDir() {
        static int counter = 0;
        path = fs::temp_directory_path() /
               ("mpsearch_policy_test_" + std::to_string(::getpid()) + "_" + std::to_string(counter++));
        fs::create_directories(path);
    }
    ~PolicyDir() { fs::remove_all(path); }
    std::string file(const std::string& name) const { return (path / name).string(); }
};

void write_text(const std::string& path, const std::string& text) {
    std::ofstream(path, std::ios::binary) << text;
}

// conv0 (4 kernels) -> relu1 -> flatten2 -> fully_connected3 (3 kernels)
Graph model() {
    test::GraphBuilder b({1, 4, 4});
    return b.finish(b.fully_connected(b.flatten(b.relu(b.conv(b.input(), 4))), 3));
}

struct Fixture {
    PolicyDir dir;
    Graph graph = model();
    std::string model_path = dir.file("model.onnx");
    std::string hash;
    Fixture() {
        write_text(model_path, "not really an onnx file, but bytes to hash");
        hash = sha256_file(model_path);
    }

    // A valid file as text, so that each rejection test can break one line of it.
    std::string valid_text() const {
        return "version: 1\n"                                     // 1
               "model:\n"                                         // 2
               "  path: model.onnx\n"                             // 3
               "  sha256: " + hash + "\n"                         // 4
               "quantizers:\n"                                    // 5
               "  weights: {name: uniform, args: {}}\n"           // 6
               "  activations: {calibration: max}\n"              // 7
               "layers:\n"                                        // 8
               "  conv0:\n"                                       // 9
               "    activation_bits: 8\n"                         // 10
               "    weight_bits: [4, 4, 0, 2]\n"                  // 11
               "  fully_connected3:\n"                            // 12
               "    activation_bits: 4\n"                         // 13
               "    weight_bits: 8\n"                             // 14
               "metrics:\n"                                       // 15
               "  accuracy: 88.5\n"                               // 16
               "  split: validation\n";                           // 17
    }

    // Replaces line `line` (1-based) of the valid text by `replacement` (may be several lines or
    // empty), writes it, and returns the error message of reading it ("" when it reads).
    std::string error_with(int line, const std::string& replacement) const {
        std::istringstream in(valid_text());
        std::string text, current;
        for (int n = 1; std::getline(in, current); ++n)
            text += n == line ? replacement : current + "\n";
        return error_of_text(text);
    }

    // Writes `text` as the policy file and reads it: what it reports, or nullopt when it reads.
    std::optional<YamlError> read_error(const std::string& text) const {
        const std::string path = dir.file("policy.yaml");
        write_text(path, text);
        try {
            read_policy_file(path, graph, model_path);
        } catch (const YamlError& e) {
            return e;
        }
        return std::nullopt;
    }

    std::string error_of_text(const std::string& text) const {
        const std::optional<YamlError> error = read_error(text);
        return error ? error->what() : "";
    }

    std::vector<YamlProblem> problems_of_text(const std::string& text) const {
        const std::optional<YamlError> error = read_error(text);
        return error ? error->problems() : std::vector<YamlProblem>{};
    }

    std::string at(int line, int column) const {
        return dir.file("policy.yaml") + ":" + std::to_string(line) + ":" + std::to_string(column) +
               ": ";
    }
};

bool starts_with(const std::string& text, const std::string& prefix) {
    return text.rfind(prefix, 0) == 0;
}

// True when one line of `error` starts with `prefix` and contains `part`.
bool has_line(const std::string& error, const std::string& prefix, const std::string& part) {
    std::istringstream lines(error);
    for (std::string line; std::getline(lines, line);)
        if (starts_with(line, prefix) && line.find(part) != std::string::npos) return true;
    return false;
}

} // namespace

TEST_CASE("sha256: FIPS 180 test vectors") {
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    CHECK(sha256_hex("abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopq"
                     "klmnopqrlmnopqrsmnopqrstnopqrstu") ==
          "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1");
    CHECK(sha256_hex(std::string(1000000, 'a')) ==
          "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    // Incremental updates in odd pieces equal one update; a file equals its bytes.
    std::string text;
    for (int i = 0; i < 1000; ++i) text += static_cast<char>(i * 7);
    Sha256 pieces;
    for (size_t i = 0; i < text.size(); i += 37) pieces.update(text.substr(i, 37));
    CHECK(pieces.hex_digest() == sha256_hex(text));
    PolicyDir dir;
    write_text(dir.file("bytes"), text);
    CHECK(sha256_file(dir.file("bytes")) == sha256_hex(text));
    CHECK_THROWS_WITH_AS(sha256_file(dir.file("absent")), doctest::Contains("absent"), Error);
}

TEST_CASE("policy_file: write then read gives the same policy, quantizers and metrics") {
    Fixture f;
    PolicyFile file;
    file.model_path = f.model_path;
    file.model_sha256 = f.hash;
    file.weight_quantizer = {"kmeans", {{"iterations", "20"}}};
    file.activation_calibration = {"percentile", {{"percentile", "99.9"}}};
    file.policy = BitPolicy::uniform(f.graph, 4, 8);
    file.policy.layers[0].weight_bits = {4, 0, 2, 16};
    file.policy.layers[1].activation_bits = 32;
    PolicyMetrics m = metrics_from_costs(compute_costs(f.graph, file.policy));
    m.accuracy = 91.23;
    m.split = "validation";
    file.metrics = m;

    const std::string path = f.dir.file("out.yaml");
    write_policy_file(path, file);
    const PolicyFile back = read_policy_file(path, f.graph, f.model_path);
    CHECK(back.policy == file.policy);
    CHECK(back.weight_quantizer == file.weight_quantizer);
    CHECK(back.activation_calibration == file.activation_calibration);
    CHECK(back.model_sha256 == f.hash);
    CHECK(back.model_path == f.model_path);
    REQUIRE(back.metrics.has_value());
    CHECK(*back.metrics == m); // doubles round-trip exactly
    CHECK(back == file);
    // No temporary file left behind; a second write replaces the first.
    int files = 0;
    for (const auto& entry : fs::directory_iterator(f.dir.path)) files += entry.is_regular_file();
    CHECK(files == 2); // model.onnx and out.yaml
    file.policy = BitPolicy::uniform(f.graph, 2, 2);
    file.metrics.reset();
    write_policy_file(path, file);
    CHECK(read_policy_file(path, f.graph, f.model_path) == file);
    // An empty model path skips the hash check.
    CHECK(read_policy_file(path, f.graph, "").policy == file.policy);
    CHECK_THROWS_WITH_AS(write_policy_file(f.dir.file("no/such/dir/p.yaml"), file),
                         doctest::Contains("p.yaml: cannot write (open"), Error);
}

TEST_CASE("policy_file: layer names that need quoting survive the round trip") {
    test::GraphBuilder b({1, 4, 4});
    Graph g = b.finish(b.fully_connected(b.flatten(b.conv(b.input(), 2)), 2));
    g.nodes[0].name = "/features/0/Conv: #1";
    g.nodes[2].name = "42";
    PolicyDir dir;
    PolicyFile file;
    file.model_path = "m.onnx";
    file.model_sha256 = sha256_hex("m");
    file.policy = BitPolicy::uniform(g, 3, 5);
    write_policy_file(dir.file("p.yaml"), file);
    CHECK(read_policy_file(dir.file("p.yaml"), g, "").policy == file.policy);
}

TEST_CASE("policy_file: the hand-written valid file reads") {
    Fixture f;
    const PolicyFile file = [&] {
        write_text(f.dir.file("policy.yaml"), f.valid_text());
        return read_policy_file(f.dir.file("policy.yaml"), f.graph, f.model_path);
    }();
    CHECK(file.policy.layers[0].weight_bits == std::vector<int>{4, 4, 0, 2});
    CHECK(file.policy.layers[1].weight_bits == std::vector<int>{8, 8, 8});
    CHECK(file.policy.layers[1].activation_bits == 4);
    CHECK(file.metrics->accuracy == 88.5);
    CHECK_FALSE(file.metrics->bitops.has_value());
    // Without quantizers and metrics blocks: defaults.
    std::string minimal = f.valid_text();
    minimal = minimal.substr(0, minimal.find("metrics:"));
    minimal.erase(minimal.find("quantizers:"), minimal.find("layers:") - minimal.find("quantizers:"));
    CHECK(f.error_of_text(minimal).empty());
    // Numbers read as everywhere else (number_text.h): a '+' sign is allowed.
    std::string signed_bits = f.valid_text();
    signed_bits.replace(signed_bits.find("activation_bits: 8"), 18, "activation_bits: +8");
    CHECK(f.error_of_text(signed_bits).empty());
}

TEST_CASE("policy_file: every rejection names the file, the line and the column") {
    Fixture f;
    CHECK(f.error_with(0, "").empty()); // the unmodified text is valid

    struct Case {
        int line;                 // line to replace
        std::string replacement;
        int error_line;           // position the error must name
        int error_column;
        std::string message;      // part of the message
    };
    const std::vector<Case> cases{
        {11, "    weight_bits: [4, 4, 0\n", 12, 19, "malformed YAML"},
        {1, "version: 2\n", 1, 10, "version 2 is not supported"},
        {1, "", 1, 1, "missing key 'version'"},
        {4, "  sha256: " + std::string(64, 'a') + "\n", 4, 11, "but " + f.model_path + " has SHA-256"},
        {4, "  sha256: 1234\n", 4, 11, "64 lowercase hex digits"},
        {6, "  weights: {name: lloyd}\n", 6, 12, "unknown weight quantizer 'lloyd'; known quantizers: "
                                                 "uniform, uniform_asymmetric, ls, kmeans"},
        {6, "  weights: {name: kmeans, args: {iters: 3}}\n", 6, 12, "unknown argument 'iters'"},
        {7, "  activations: {calibration: entropy}\n", 7, 16, "unknown activation calibration rule"},
        {9, "  conv9:\n", 9, 3, "unknown layer 'conv9'"},
        {9, "  relu1:\n", 9, 3, "'relu1' is a relu node"},
        {12, "  conv0:\n", 12, 3, "appears twice"},
        {11, "    weight_bits: [4, 4, 0]\n", 11, 18, "has 4 kernels but weight_bits lists 3"},
        {11, "    weight_bits: [4, 4, 0, 9]\n", 11, 28, "kernel 3: weight bit-width 9 is out of range"},
        {11, "    weight_bits: [4,\n      4, 0,\n      17]\n", 13, 7, "weight bit-width 17 is out of range"},
        {14, "    weight_bits: -1\n", 14, 18, "weight bit-width -1 is out of range"},
        {13, "    activation_bits: 0\n", 13, 22, "activation bit-width 0 is out of range"},
        {13, "    activation_bits: 4.5\n", 13, 22, "must be an integer, got '4.5'"},
        {13, "    activation_bits: +-4\n", 13, 22, "must be an integer, got '+-4'"},
        {13, "    activation_bit: 4\n", 13, 5, "unknown key 'activation_bit'"},
        {13, "", 13, 5, "missing key 'activation_bits'"}, // a block mapping is marked at its first key
        {14, "    weight_bits: {a: 1}\n", 14, 18, "a number or a list"},
        {12, "  fully_connected3: 4\n  other:\n", 12, 21, "must be a mapping"},
        {16, "  accuracy: high\n", 16, 13, "must be a number, got 'high'"},
        {17, "  split: validation\n  bitops: 1.5\n", 18, 11, "must be an integer"},
        {17, "  spilt: validation\n", 17, 3, "unknown key 'spilt'"},
        {15, "extra: 1\nmetrics:\n", 15, 1, "unknown key 'extra'"},
    };
    for (const Case& c : cases) {
        CAPTURE(c.replacement);
        const std::string error = f.error_with(c.line, c.replacement);
        const bool found = has_line(error, f.at(c.error_line, c.error_column), c.message);
        CHECK(found);
        if (!found) MESSAGE(error);
    }

    // A layer missing altogether: named, at the line of the layers mapping.
    {
        std::string text = f.valid_text();
        const size_t from = text.find("  fully_connected3:");
        text.erase(from, text.find("metrics:") - from);
        const std::string error = f.error_of_text(text);
        // yaml-cpp marks a block mapping at its first key
        CHECK(has_line(error, f.at(9, 3), "layers 'fully_connected3' of the model are missing"));
    }
    CHECK(f.error_of_text("- just\n- a list\n").find("not a YAML mapping") != std::string::npos);
    CHECK(f.error_of_text("").find("not a YAML mapping") != std::string::npos);
    CHECK_THROWS_WITH_AS(read_policy_file(f.dir.file("missing.yaml"), f.graph, f.model_path),
                         doctest::Contains("cannot open the policy file"), Error);
}

TEST_CASE("policy_file: every problem of a file is reported at once, in file order") {
    Fixture f;
    std::string text = f.valid_text();
    const auto replace = [&text](const std::string& from, const std::string& to) {
        text.replace(text.find(from), from.size(), to);
    };
    replace("version: 1", "version: 2");                           // 1:10
    replace("  sha256: " + f.hash, "  sha256: 1234");               // 4:11
    replace("weight_bits: [4, 4, 0, 2]", "weight_bits: [4, 9, 0, 17]"); // 11:22 and 11:28
    replace("activation_bits: 4", "activation_bits: 0");           // 13:22
    replace("accuracy: 88.5", "acuracy: 88.5");                     // 16:3
    const std::vector<YamlProblem> problems = f.problems_of_text(text);
    struct Expected {
        int line, column;
        std::string message;
    };
    const std::vector<Expected> expected{
        {1, 10, "version 2 is not supported"},
        {4, 11, "64 lowercase hex digits"},
        {11, 22, "kernel 1: weight bit-width 9 is out of range"},
        {11, 28, "kernel 3: weight bit-width 17 is out of range"},
        {13, 22, "activation bit-width 0 is out of range"},
        {16, 3, "unknown key 'acuracy'"},
    };
    REQUIRE(problems.size() == expected.size());
    for (size_t i = 0; i < expected.size(); ++i) {
        CAPTURE(i);
        CHECK(problems[i].line == expected[i].line);
        CHECK(problems[i].column == expected[i].column);
        CHECK(problems[i].message.find(expected[i].message) != std::string::npos);
    }
    // what() is all of them, one per line, each at its position.
    const std::string error = f.error_of_text(text);
    CHECK(std::count(error.begin(), error.end(), '\n') + 1 == static_cast<long>(expected.size()));
    for (const Expected& e : expected)
        CHECK(has_line(error, f.at(e.line, e.column), e.message));
}

TEST_CASE("policy_file: a policy made for another model is one problem, not one per layer") {
    Fixture f;
    std::string text = f.valid_text();
    text.replace(text.find(f.hash), f.hash.size(), std::string(64, 'a'));
    text.replace(text.find("conv0:"), 6, "conv9:"); // would be unknown for this model
    const std::vector<YamlProblem> problems = f.problems_of_text(text);
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].line == 4);
    CHECK(problems[0].message.find("the policy was made for a model with SHA-256") !=
          std::string::npos);
}

TEST_CASE("policy_file: damaged files give mps::Error, never another exception") {
    Fixture f;
    const std::string valid = f.valid_text();
    test::Rng rng(99);
    const std::string alphabet = ":-[]{}, \n#&*!|>'\"%@`0123456789abc";
    int rejected = 0;
    for (int trial = 0; trial < 300; ++trial) {
        std::string text = valid;
        const int edits = 1 + trial % 4;
        for (int e = 0; e < edits; ++e) {
            const auto pos = static_cast<size_t>(rng.uniform(0.0f, 1.0f) * static_cast<float>(text.size() - 1));
            const auto c = alphabet[static_cast<size_t>(rng.uniform(0.0f, 1.0f) * static_cast<float>(alphabet.size() - 1))];
            if (trial % 3 == 0) text.erase(pos, 1);
            else if (trial % 3 == 1) text.insert(pos, 1, c);
            else text[pos] = c;
        }
        const std::string path = f.dir.file("damaged.yaml");
        write_text(path, text);
        try {
            read_policy_file(path, f.graph, f.model_path);
        } catch (const Error& e) {
            ++rejected;
            CHECK(starts_with(e.what(), path + ":"));
        } catch (const std::exception& e) {
            FAIL("unexpected exception " << e.what() << " for\n" << text);
        }
    }
    CHECK(rejected > 100);
}
