// archive.jsonl: what is written reads back identically (scores bit for bit, costs recomputed),
// a tail torn by a kill is dropped, and damage elsewhere (an edited record too: checksums) is an
// error naming the line; the run header reads back and a changed dependency is refused by key.
#include "search/archive.h"

#include "evaluator/base/error.h"
#include "tests/graph_builders.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <unistd.h>

using namespace mps;
using test::TempDir;

namespace {

Graph small_graph() { return test::folded(test::resnet_like({1, 12, 12}, {4, 8}, 10, 3)); }

Score some_score(const Graph& graph, const BitPolicy& policy, double accuracy) {
    Score s;
    s.accuracy_percent = accuracy;
    s.mean_loss = accuracy / 37.0;      // non-terminating binary fractions: exercises round trips
    s.mean_kl = 1.0 / 3.0;
    s.logit_sqnr_db = 20.0 / 7.0;
    s.correct = 123;
    s.images = 456;
    s.seconds = 0.1;
    s.costs = compute_costs(graph, policy);
    return s;
}

BitPolicy mixed_policy(const Graph& graph, int seed) {
    static constexpr int bits[] = {0, 2, 3, 4, 8, 16, 32};
    BitPolicy p = BitPolicy::uniform(graph, 4, 8);
    for (size_t l = 0; l < p.layers.size(); ++l)
        for (size_t k = 0; k < p.layers[l].weight_bits.size(); ++k)
            p.layers[l].weight_bits[k] = bits[(k * 3 + l + static_cast<size_t>(seed)) % 7];
    return p;
}

void check_same(const Score& a, const Score& b) {
    CHECK(a.accuracy_percent == b.accuracy_percent);
    CHECK(a.mean_loss == b.mean_loss);
    CHECK(a.mean_kl == b.mean_kl);
    CHECK((a.logit_sqnr_db == b.logit_sqnr_db ||
           (std::isinf(a.logit_sqnr_db) && std::isinf(b.logit_sqnr_db))));
    CHECK(a.correct == b.correct);
    CHECK(a.images == b.images);
    CHECK(a.split == b.split);
    CHECK(a.costs.bitops == b.costs.bitops);
    CHECK(a.costs.weight_bits == b.costs.weight_bits);
}

std::vector<ArchiveRecord> batch_of(const Graph& graph, int64_t first_id, int64_t batch, int n) {
    std::vector<ArchiveRecord> records;
    for (int i = 0; i < n; ++i) {
        ArchiveRecord r;
        r.id = first_id + i;
        r.batch = batch;
        r.stage = "random";
        r.evaluation.policy = mixed_policy(graph, static_cast<int>(r.id));
        r.evaluation.score = some_score(graph, r.evaluation.policy, 50.0 + 0.1 * static_cast<double>(r.id));
        r.elapsed_seconds = 1.5 * static_cast<double>(batch + 1);
        if (batch == 1) r.reward = -0.1 * static_cast<double>(r.id) / 3.0; // RL policies only
        records.push_back(r);
    }
    return records;
}

void append_raw(const std::string& path, const std::string& text) {
    std::ofstream out(path, std::ios::app | std::ios::binary);
    out << text;
}

} // namespace

TEST_CASE("archive round trip: references, search batches, baselines and the chosen score") {
    const Graph graph = small_graph();
    TempDir dir;
    const BitPolicy fp32 = BitPolicy::uniform(graph, float_bits, float_bits);
    Score reference = some_score(graph, fp32, 91.25);
    reference.mean_kl = 0.0;
    reference.logit_sqnr_db = std::numeric_limits<double>::infinity();
    const auto first = batch_of(graph, 0, 0, 3), second = batch_of(graph, 3, 1, 2);
    const BitPolicy w4a4 = BitPolicy::uniform(graph, 4, 4);
    Score baseline = some_score(graph, w4a4, 80.5);
    baseline.split = Split::test;
    Score chosen = some_score(graph, second[1].evaluation.policy, 88.0);
    chosen.split = Split::test;
    {
        ArchiveWriter writer(dir.file("archive.jsonl"), {});
        writer.reference(reference);
        writer.batch(first);
        writer.batch(second);
        writer.baseline("W4A4", w4a4, baseline);
        writer.chosen(4, chosen);
    }
    const ArchiveContents back = read_archive(dir.file("archive.jsonl"), graph);
    CHECK(back.dropped_lines == 0);
    CHECK(back.lines.size() == 8);
    REQUIRE(back.references.count("validation") == 1);
    check_same(back.references.at("validation"), reference);
    REQUIRE(back.records.size() == 5);
    for (size_t i = 0; i < 5; ++i) {
        const ArchiveRecord& want = i < 3 ? first[i] : second[i - 3];
        CHECK(back.records[i].id == want.id);
        CHECK(back.records[i].batch == want.batch);
        CHECK(back.records[i].stage == want.stage);
        CHECK(back.records[i].elapsed_seconds == want.elapsed_seconds);
        CHECK(back.records[i].reward == want.reward);
        CHECK(back.records[i].evaluation.policy == want.evaluation.policy);
        check_same(back.records[i].evaluation.score, want.evaluation.score);
    }
    REQUIRE(back.baselines.count("W4A4/test") == 1);
    check_same(back.baselines.at("W4A4/test"), baseline);
    REQUIRE(back.chosen_id);
    CHECK(*back.chosen_id == 4);
    check_same(*back.chosen_test, chosen);

    // Rewriting with the kept lines and appending continues the same file.
    {
        ArchiveWriter writer(dir.file("archive.jsonl"), back.lines);
        writer.batch(batch_of(graph, 5, 2, 1));
    }
    CHECK(read_archive(dir.file("archive.jsonl"), graph).records.size() == 6);
}

TEST_CASE("archive drops a tail torn by a kill: a cut line or an incomplete batch") {
    const Graph graph = small_graph();
    TempDir dir;
    {
        ArchiveWriter writer(dir.file("archive.jsonl"), {});
        writer.batch(batch_of(graph, 0, 0, 2));
    }
    SUBCASE("a last line without its newline") {
        append_raw(dir.file("archive.jsonl"), "{\"kind\":\"search\",\"id\":2,\"ba");
        const ArchiveContents back = read_archive(dir.file("archive.jsonl"), graph);
        CHECK(back.records.size() == 2);
        CHECK(back.dropped_lines == 1);
    }
    SUBCASE("a batch of three with only two lines written") {
        std::string lines;
        { // write a complete batch of 3 elsewhere, keep its first two lines
            TempDir other;
            { ArchiveWriter writer(other.file("archive.jsonl"), {}); writer.batch(batch_of(graph, 2, 1, 3)); }
            std::ifstream in(other.file("archive.jsonl"));
            std::string line;
            for (int i = 0; i < 2 && std::getline(in, line); ++i) lines += line + "\n";
        }
        append_raw(dir.file("archive.jsonl"), lines);
        const ArchiveContents back = read_archive(dir.file("archive.jsonl"), graph);
        CHECK(back.records.size() == 2);
        CHECK(back.dropped_lines == 2);
        CHECK(back.lines.size() == 2);
    }
}

TEST_CASE("archive damage before the tail, or another model's archive, is an error with the line") {
    const Graph graph = small_graph();
    TempDir dir;
    {
        ArchiveWriter writer(dir.file("archive.jsonl"), {});
        writer.batch(batch_of(graph, 0, 0, 1));
    }
    SUBCASE("garbage in the middle") {
        std::string first_line;
        std::getline(std::ifstream(dir.file("archive.jsonl")) >> std::ws, first_line);
        append_raw(dir.file("archive.jsonl"), "not json\n" + first_line + "\n"); // damage, then a valid line
        CHECK_THROWS_WITH_AS(read_archive(dir.file("archive.jsonl"), graph),
                             doctest::Contains("archive.jsonl:2: the line has no checksum"), Error);
    }
    SUBCASE("a record edited by hand: its checksum no longer matches") {
        std::string line;
        std::getline(std::ifstream(dir.file("archive.jsonl")), line);
        const std::string was = "\"accuracy\":50.0";
        const size_t at = line.find(was);
        REQUIRE(at != std::string::npos);
        line.replace(at, was.size(), "\"accuracy\":99.0");
        std::ofstream(dir.file("archive.jsonl"), std::ios::binary) << line << "\n";
        CHECK_THROWS_WITH_AS(read_archive(dir.file("archive.jsonl"), graph),
                             doctest::Contains("archive.jsonl:1: the line does not match its checksum"),
                             Error);
    }

    SUBCASE("an archive of another model") {
        Graph other = test::resnet_like({1, 12, 12}, {4, 16}, 10, 3);
        fold_batch_norm(other);
        CHECK_THROWS_WITH_AS(read_archive(dir.file("archive.jsonl"), other),
                             doctest::Contains("archive.jsonl:1:"), Error);
    }
    SUBCASE("a missing file") {
        CHECK_THROWS_WITH_AS(read_archive((dir.path() / "none.jsonl").string(), graph),
                             doctest::Contains("none.jsonl: cannot read the archive"), Error);
    }
}

TEST_CASE("archive header: read back as written; a changed dependency is refused by its key") {
    const Graph graph = small_graph();
    TempDir dir;
    const ArchiveHeader header{{"validation_images", "500"}, {"weight_quantizer", "uniform"}};
    {
        ArchiveWriter writer(dir.file("archive.jsonl"), {});
        writer.header(header);
        writer.batch(batch_of(graph, 0, 0, 2));
    }
    const ArchiveContents back = read_archive(dir.file("archive.jsonl"), graph);
    REQUIRE(back.header);
    CHECK(*back.header == header);
    CHECK(back.records.size() == 2);
    CHECK_NOTHROW(check_header("a", *back.header, header));

    ArchiveHeader changed = header;
    changed["validation_images"] = "400";
    CHECK_THROWS_WITH_AS(check_header("a", *back.header, changed),
                         doctest::Contains("depend on validation_images, which was '500' and is now '400'"),
                         Error);
    ArchiveHeader more = header;
    more["model_sha256"] = "ab";
    CHECK_THROWS_WITH_AS(check_header("a", *back.header, more),
                         doctest::Contains("model_sha256, which was (none)"), Error);

    // a header anywhere but first is damage
    append_raw(dir.file("archive.jsonl"), back.lines.front() + "\n");
    CHECK_THROWS_WITH_AS(read_archive(dir.file("archive.jsonl"), graph),
                         doctest::Contains("archive.jsonl:4: a run header after the first line"),
                         Error);
}
