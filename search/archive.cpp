#include "search/archive.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"

#include <nlohmann/json.hpp>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>

namespace mps {

namespace {

using nlohmann::json;

json policy_json(const BitPolicy& policy) {
    json layers = json::array();
    for (const LayerBits& layer : policy.layers) {
        json w = layer.uniform_weights() && !layer.weight_bits.empty()
                     ? json(layer.weight_bits.front())
                     : json(layer.weight_bits);
        layers.push_back({{"layer", layer.name}, {"a", layer.activation_bits}, {"w", w}});
    }
    return layers;
}

BitPolicy policy_from_json(const json& layers, const Graph& graph) {
    BitPolicy policy;
    const std::vector<const Node*> nodes = quantizable_layers(graph);
    if (!layers.is_array() || layers.size() != nodes.size())
        throw Error("the policy does not list the model's " + std::to_string(nodes.size()) +
                    " quantizable layers");
    for (size_t i = 0; i < nodes.size(); ++i) {
        const json& entry = layers[i];
        LayerBits bits;
        bits.name = entry.at("layer").get<std::string>();
        bits.activation_bits = entry.at("a").get<int>();
        const json& w = entry.at("w");
        if (w.is_array())
            bits.weight_bits = w.get<std::vector<int>>();
        else
            bits.weight_bits.assign(static_cast<size_t>(kernel_count(*nodes[i])), w.get<int>());
        policy.layers.push_back(std::move(bits));
    }
    policy.validate(graph);
    return policy;
}

json score_json(const Score& s) {
    return {{"split", split_name(s.split)},
            {"path", execution_path_name(s.path)},
            {"accuracy", s.accuracy_percent},
            {"loss", s.mean_loss},
            {"kl", s.mean_kl},
            {"sqnr_db", std::isinf(s.logit_sqnr_db) ? json(nullptr) : json(s.logit_sqnr_db)},
            {"correct", s.correct},
            {"images", s.images},
            {"seconds", s.seconds},
            // Costs, for readers of the file; loading recomputes them from the policy.
            {"bitops", s.costs.bitops},
            {"relative_bitops", s.costs.relative_bitops()},
            {"weight_bytes", s.costs.weight_bytes()},
            {"relative_weight_bytes", s.costs.relative_weight_bytes()},
            {"macs_unpruned", s.costs.flops / 2}};
}

Score score_from_json(const json& j, const Graph& graph, const BitPolicy& policy) {
    Score s;
    s.split = parse_split(j.at("split").get<std::string>());
    s.path = parse_execution_path(j.at("path").get<std::string>());
    s.accuracy_percent = j.at("accuracy").get<double>();
    s.mean_loss = j.at("loss").get<double>();
    s.mean_kl = j.at("kl").get<double>();
    const json& sqnr = j.at("sqnr_db");
    s.logit_sqnr_db = sqnr.is_null() ? std::numeric_limits<double>::infinity() : sqnr.get<double>();
    s.correct = j.at("correct").get<int64_t>();
    s.images = j.at("images").get<int64_t>();
    s.seconds = j.at("seconds").get<double>();
    s.costs = compute_costs(graph, policy);
    return s;
}

// The checksum of a line's text without its "check" member (archive.h).
std::string checksum(std::string_view unchecked) { return sha256_hex(unchecked).substr(0, 16); }

const std::string check_key = ",\"check\":\"";

// `value` as one archive line with its checksum, newline included.
std::string checked_line(const json& value) {
    const std::string text = value.dump();
    return text.substr(0, text.size() - 1) + check_key + checksum(text) + "\"}\n";
}

// The line without its checksum when the checksum matches; else mps::Error.
std::string verified(const std::string& line) {
    constexpr size_t digits = 16;
    const size_t tail = check_key.size() + digits + 2; // the key, the digits, "}
    const size_t at = line.size() >= tail ? line.size() - tail : std::string::npos;
    if (at == std::string::npos || line.compare(at, check_key.size(), check_key) != 0 ||
        line.compare(line.size() - 2, 2, "\"}") != 0)
        throw Error("the line has no checksum (\"check\"), so it was not written by this mpsearch "
                    "or was edited; restore the archive or start a new run");
    std::string text = line.substr(0, at) + "}";
    if (checksum(text) != line.substr(at + check_key.size(), digits))
        throw Error("the line does not match its checksum: it was edited or damaged, and its "
                    "scores cannot be trusted; restore the archive or start a new run");
    return text;
}

// One parsed line; `batch_size` > 0 for search lines.
struct Line {
    json value;
    std::string text;
};

void add_line(ArchiveContents& contents, const Line& line, const Graph& graph) {
    const json& j = line.value;
    const std::string kind = j.at("kind").get<std::string>();
    if (kind == "run") {
        if (!contents.lines.empty()) throw Error("a run header after the first line");
        contents.header = j.at("depends").get<ArchiveHeader>();
    } else if (kind == "reference") {
        const BitPolicy fp32 = BitPolicy::uniform(graph, float_bits, float_bits);
        contents.references[j.at("split").get<std::string>()] =
            score_from_json(j.at("score"), graph, fp32);
    } else if (kind == "baseline") {
        const std::string bits = j.at("bits").get<std::string>();
        const BitPolicy policy = policy_from_json(j.at("policy"), graph);
        contents.baselines[bits + "/" + j.at("split").get<std::string>()] =
            score_from_json(j.at("score"), graph, policy);
    } else if (kind == "search") {
        ArchiveRecord r;
        r.id = j.at("id").get<int64_t>();
        r.batch = j.at("batch").get<int64_t>();
        r.stage = j.at("stage").get<std::string>();
        r.elapsed_seconds = j.at("elapsed").get<double>();
        r.evaluation.policy = policy_from_json(j.at("policy"), graph);
        r.evaluation.score = score_from_json(j.at("score"), graph, r.evaluation.policy);
        if (j.contains("reward")) r.reward = j.at("reward").get<double>();
        if (j.contains("own_accuracy")) r.own_accuracy = j.at("own_accuracy").get<double>();
        if (r.id != static_cast<int64_t>(contents.records.size()))
            throw Error("search record id " + std::to_string(r.id) + " is out of order (expected " +
                        std::to_string(contents.records.size()) + ")");
        contents.records.push_back(std::move(r));
    } else if (kind == "chosen") {
        const int64_t id = j.at("id").get<int64_t>();
        if (id < 0 || id >= static_cast<int64_t>(contents.records.size()))
            throw Error("the chosen record " + std::to_string(id) + " does not exist");
        contents.chosen_id = id;
        contents.chosen_test =
            score_from_json(j.at("score"), graph, contents.records[static_cast<size_t>(id)].evaluation.policy);
    } else {
        throw Error("unknown line kind '" + kind + "'");
    }
    contents.lines.push_back(line.text);
}

// Drops a trailing search batch with fewer lines than its batch_size (cut by a kill).
int64_t drop_torn_batch(std::vector<Line>& lines) {
    if (lines.empty() || lines.back().value.value("kind", "") != "search") return 0;
    const int64_t batch = lines.back().value.at("batch").get<int64_t>();
    const int64_t size = lines.back().value.at("batch_size").get<int64_t>();
    int64_t present = 0;
    for (auto it = lines.rbegin(); it != lines.rend(); ++it, ++present)
        if (it->value.value("kind", "") != "search" || it->value.at("batch").get<int64_t>() != batch)
            break;
    if (present >= size) return 0;
    lines.resize(lines.size() - static_cast<size_t>(present));
    return present;
}

} // namespace

ArchiveContents read_archive(const std::string& path, const Graph& graph) {
    std::ifstream in(path, std::ios::binary);
    if (!in) throw Error(path + ": cannot read the archive (" + std::strerror(errno) + ")");
    std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ArchiveContents contents;
    std::vector<Line> lines;
    size_t start = 0;
    int line_number = 0;
    while (start < data.size()) {
        ++line_number;
        const size_t end = data.find('\n', start);
        if (end == std::string::npos) { // no newline: the last write was cut short
            ++contents.dropped_lines;
            break;
        }
        const std::string where = path + ":" + std::to_string(line_number) + ": ";
        Line line{json(), data.substr(start, end - start)};
        try {
            line.value = json::parse(verified(line.text), nullptr, false);
        } catch (const Error& e) {
            throw Error(where + e.what());
        }
        if (line.value.is_discarded() || !line.value.is_object())
            throw Error(where + "not a JSON object; the archive is damaged (restore it or start a new run)");
        lines.push_back(std::move(line));
        start = end + 1;
    }
    try {
        contents.dropped_lines += drop_torn_batch(lines);
    } catch (const json::exception& e) {
        throw Error(path + ": last line: " + e.what());
    }
    for (size_t i = 0; i < lines.size(); ++i) {
        try {
            add_line(contents, lines[i], graph);
        } catch (const std::exception& e) { // json::exception or mps::Error
            throw Error(path + ":" + std::to_string(i + 1) + ": " + e.what() +
                        "; the archive does not belong to this model or is damaged");
        }
    }
    return contents;
}

void check_header(const std::string& path, const ArchiveHeader& archived, const ArchiveHeader& now) {
    auto value = [](const ArchiveHeader& h, const std::string& key) {
        auto it = h.find(key);
        return it == h.end() ? std::string("(none)") : "'" + it->second + "'";
    };
    ArchiveHeader keys = archived;
    keys.insert(now.begin(), now.end());
    for (const auto& [key, ignored] : keys) {
        const std::string then = value(archived, key), current = value(now, key);
        if (then != current)
            throw Error(path + ": its scores depend on " + key + ", which was " + then +
                        " and is now " + current +
                        ", so they cannot be resumed; restore what changed (the run's config.yaml, "
                        "the model, the data files or the program), or start a new run");
    }
}

ArchiveWriter::ArchiveWriter(const std::string& path, const std::vector<std::string>& kept_lines)
    : path_(path) {
    std::string text;
    for (const std::string& line : kept_lines) text += line + "\n";
    write_file_atomically(path, text);
    file_ = std::fopen(path.c_str(), "ab");
    if (!file_) throw Failure(path + ": cannot open the archive for appending (" +
                              std::strerror(errno) + ")");
}

ArchiveWriter::~ArchiveWriter() {
    if (file_) std::fclose(file_);
}

void ArchiveWriter::append(const std::string& text) {
    const bool ok = std::fwrite(text.data(), 1, text.size(), file_) == text.size() &&
                    std::fflush(file_) == 0 && ::fsync(::fileno(file_)) == 0;
    if (!ok)
        throw Failure(path_ + ": cannot append to the archive (" + std::strerror(errno) +
                      "); the run can be resumed with --resume once the disk has space");
}

void ArchiveWriter::header(const ArchiveHeader& header) {
    append(checked_line(json{{"kind", "run"}, {"depends", header}}));
}

void ArchiveWriter::reference(const Score& score) {
    append(checked_line(
        json{{"kind", "reference"}, {"split", split_name(score.split)}, {"score", score_json(score)}}));
}

void ArchiveWriter::baseline(const std::string& bits, const BitPolicy& policy, const Score& score) {
    append(checked_line(json{{"kind", "baseline"},
                             {"bits", bits},
                             {"split", split_name(score.split)},
                             {"policy", policy_json(policy)},
                             {"score", score_json(score)}}));
}

void ArchiveWriter::chosen(int64_t record_id, const Score& test_score) {
    append(checked_line(json{{"kind", "chosen"}, {"id", record_id}, {"score", score_json(test_score)}}));
}

void ArchiveWriter::batch(const std::vector<ArchiveRecord>& records) {
    std::string text;
    for (const ArchiveRecord& r : records) {
        json line{{"kind", "search"},
                  {"id", r.id},
                  {"batch", r.batch},
                  {"batch_size", records.size()},
                  {"stage", r.stage},
                  {"elapsed", r.elapsed_seconds},
                  {"policy", policy_json(r.evaluation.policy)},
                  {"score", score_json(r.evaluation.score)}};
        if (r.reward) line["reward"] = *r.reward;
        if (r.own_accuracy) line["own_accuracy"] = *r.own_accuracy;
        text += checked_line(line);
    }
    append(text);
}

} // namespace mps
