#include "evaluator/engine/evaluator.h"

#include "evaluator/base/error.h"
#include "evaluator/base/lru_cache.h"
#include "evaluator/engine/code_chains.h"
#include "evaluator/engine/evaluate.h"
#include "evaluator/engine/layer_inputs.h"

#include <omp.h>
#include <tbb/parallel_for.h>
#include <tbb/task_arena.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <limits>
#include <map>
#include <mutex>
#include <unordered_map>
#include <unordered_set>

namespace mps {

EvaluationData load_evaluation_data(const std::string& dir, int64_t calibration_images) {
    const Dataset training_file = load_fashion_mnist_training_file(dir); // decompressed once
    return {fashion_mnist_split(training_file, Split::calibration, calibration_images),
            fashion_mnist_split(training_file, Split::validation),
            load_fashion_mnist(dir, Split::test)};
}

EvaluationData load_evaluation_data(const DataSource& data, int64_t calibration_images,
                                    int64_t classes) {
    if (data.is_idx()) return load_evaluation_data(data.idx_dir, calibration_images);
    return {load_split(data, Split::calibration, calibration_images, classes),
            load_split(data, Split::validation, calibration_images, classes),
            load_split(data, Split::test, calibration_images, classes)};
}

void check_data_fits(const Graph& graph, const std::string& model_path, const DataSource& data,
                     const Dataset& images) {
    const std::vector<int64_t> image_shape{images.channels, images.height, images.width};
    const std::vector<int64_t>& want = graph.input_shape;
    if (want == image_shape) return;
    std::string fix = "; use a model made for this data set, or other data (data.dir)";
    if (!data.is_idx() && want.size() == 3) {
        const std::string size = "[" + std::to_string(want[1]) + ", " + std::to_string(want[2]) + "]";
        if (want[0] != images.channels)
            fix = "; set data.preprocess.color: " + std::string(want[0] == 1 ? "gray" : "rgb");
        else
            fix = "; set data.preprocess.resize and crop so that images become " +
                  std::to_string(want[1]) + "x" + std::to_string(want[2]) + " (e.g. crop: " +
                  size + ", or resize: " + size + ")";
    }
    throw Error(model_path + ": the model reads images of " + dims_text(want) + " but " +
                images.source + " holds images of " + dims_text(image_shape) +
                (data.is_idx() ? "" : " after preprocessing") + fix);
}

namespace {

using Clock = std::chrono::steady_clock;

// FNV-1a step, the same on every platform.
uint64_t mix(uint64_t h, uint64_t v) { return (h ^ v) * 1099511628211ULL; }

// prefix[L] identifies the bits of layers < L (prefix[0]: nothing).
// Per quantizable layer L, the layers besides those before L whose bits a cut before L depends on
// (code_chains.h: the consumers of the integer path's code chains crossing it).
using CutDependencies = std::vector<std::vector<int>>;

uint64_t layer_hash(uint64_t h, const LayerBits& layer) {
    h = mix(h, static_cast<uint64_t>(layer.activation_bits) + 1000);
    for (int b : layer.weight_bits) h = mix(h, static_cast<uint64_t>(b) + 1);
    return h;
}

// Per layer L, a hash of what a cut before L depends on: the bits of the layers before L and of
// its dependencies.
std::vector<uint64_t> prefix_hashes(const BitPolicy& policy, const CutDependencies& dependencies) {
    std::vector<uint64_t> keys;
    uint64_t prefix = 1469598103934665603ULL;
    for (size_t l = 0; l <= policy.layers.size(); ++l) {
        uint64_t key = prefix;
        if (l < dependencies.size())
            for (int m : dependencies[l]) key = layer_hash(mix(key, 77), policy.layers[static_cast<size_t>(m)]);
        keys.push_back(key);
        if (l < policy.layers.size()) prefix = layer_hash(prefix, policy.layers[l]);
    }
    return keys;
}

// True when a and b agree on everything a cut before `layer` depends on.
bool same_prefix(const BitPolicy& a, const BitPolicy& b, int layer,
                 const CutDependencies& dependencies) {
    if (!std::equal(a.layers.begin(), a.layers.begin() + layer, b.layers.begin())) return false;
    if (static_cast<size_t>(layer) >= dependencies.size()) return true;
    for (int m : dependencies[static_cast<size_t>(layer)])
        if (!(a.layers[static_cast<size_t>(m)] == b.layers[static_cast<size_t>(m)])) return false;
    return true;
}

// Floats per image live just before each quantizable layer (produced earlier, read at or after
// it): what a cut there holds. Used to budget captures before any cut exists.
std::vector<int64_t> cut_floats_per_image(const Graph& graph) {
    std::map<std::string, int> producer{{graph.input, -1}};
    std::map<std::string, int> last_reader;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
        producer[graph.nodes[i].output] = i;
        for (const std::string& v : graph.nodes[i].inputs) last_reader[v] = i;
    }
    std::vector<int64_t> floats;
    for (int i = 0; i < static_cast<int>(graph.nodes.size()); ++i) {
        if (!is_quantizable(graph.nodes[i])) continue;
        int64_t live = 0;
        for (const auto& [value, reader] : last_reader)
            if (producer.at(value) < i && reader >= i) live += Tensor::count(graph.shapes.at(value));
        floats.push_back(live);
    }
    return floats;
}

// The cached activation cuts: LRU by bytes, thread-safe. An entry remembers the policy that
// produced it, so a hash collision can never hand out the wrong activations.
class CutCache {
public:
    struct Key {
        int split = 0;
        int64_t pass = 0;
        int layer = 0;
        uint64_t prefix = 0;
        bool operator==(const Key&) const = default;
    };

    CutCache(int64_t max_bytes, CutDependencies dependencies)
        : dependencies_(std::move(dependencies)), cuts_(max_bytes) {}

    std::shared_ptr<const ActivationCut> find(const Key& key, const BitPolicy& policy) {
        std::lock_guard lock(mutex_);
        // Looked at before it counts as used: a colliding prefix hash is a miss.
        const Entry* entry = cuts_.peek(key);
        if (!entry || !same_prefix(*entry->source, policy, key.layer, dependencies_))
            return nullptr;
        return cuts_.find(key)->cut;
    }

    // Replaces what `key` held (e.g. a collision). A cut larger than the whole cache is not kept.
    void store(const Key& key, std::shared_ptr<const BitPolicy> source,
               std::shared_ptr<const ActivationCut> cut) {
        const int64_t bytes = cut->bytes();
        if (bytes > cuts_.capacity()) return;
        std::lock_guard lock(mutex_);
        evictions_ += static_cast<int64_t>(
            cuts_.insert(key, {std::move(source), std::move(cut)}, bytes));
        ++captures_;
    }

    void add_to(IncrementalStats& stats) const {
        std::lock_guard lock(mutex_);
        stats.captures = captures_;
        stats.evictions = evictions_;
        stats.bytes = cuts_.cost();
    }

private:
    struct KeyHash {
        size_t operator()(const Key& k) const noexcept {
            return mix(mix(mix(k.prefix, static_cast<uint64_t>(k.layer)),
                           static_cast<uint64_t>(k.pass)),
                       static_cast<uint64_t>(k.split));
        }
    };
    struct Entry {
        std::shared_ptr<const BitPolicy> source; // the policy whose prefix produced the cut
        std::shared_ptr<const ActivationCut> cut;
    };
    const CutDependencies dependencies_;
    mutable std::mutex mutex_;
    LruCache<Key, Entry, KeyHash> cuts_; // by bytes, under the mutex
    int64_t captures_ = 0, evictions_ = 0;
};

// Sets this thread's OpenMP team size for oneDNN for the scope, then restores it (the caller's
// thread is one of the arena's workers and must get its setting back).
class OmpThreadsScope {
public:
    explicit OmpThreadsScope(int threads) : threads_(threads), previous_(omp_get_max_threads()) {
        if (threads_ > 0) omp_set_num_threads(threads_);
    }
    ~OmpThreadsScope() {
        if (threads_ > 0) omp_set_num_threads(previous_);
    }
    OmpThreadsScope(const OmpThreadsScope&) = delete;
    OmpThreadsScope& operator=(const OmpThreadsScope&) = delete;

private:
    int threads_, previous_;
};

// One candidate prepared for a call: its policy, prefix hashes and the layers to capture at.
struct Candidate {
    std::shared_ptr<const BitPolicy> policy;
    std::vector<uint64_t> prefix;
    std::vector<bool> capture; // capture[L]: store the cut before layer L
};

struct BatchResult {
    int64_t correct = 0;
    double loss = 0.0;
    double kl = 0.0;
    double signal = 0.0, noise = 0.0; // sums of fp32^2 and (logits - fp32)^2
    double seconds = 0.0;
};

// Where a run's logits go: compared with the FP32 logits of the split (`reference`), or recorded
// as those (`record`, when computing the reference itself).
struct LogitSink {
    const float* reference = nullptr;
    float* record = nullptr;
};

// A contiguous range of one candidate's batches, run by one worker.
struct Task {
    size_t candidate = 0;
    int64_t first_batch = 0, end_batch = 0;
};

} // namespace

struct Evaluator::Impl {
    struct Slot {
        std::unique_ptr<QuantizedNetwork> network;
        std::shared_ptr<const BitPolicy> installed;
    };

    Graph graph;
    std::string model_path;
    EvaluatorOptions options;
    EvaluationData data;
    std::shared_ptr<const Calibration> calibration;
    std::shared_ptr<WeightCache> weights;
    double calibration_seconds = 0.0;
    int layers = 0;
    int64_t pass_images = 0; // images per network pass: min(options.pass_images, options.batch)
    tbb::task_arena arena;
    std::vector<Slot> slots; // one per arena slot
    std::unique_ptr<CutCache> cuts;
    // Prefixes (hash of (prefix, L)) of every candidate evaluated so far: a later candidate that
    // shares one makes capturing that cut worthwhile.
    std::unordered_set<uint64_t> seen_prefixes;
    CutDependencies dependencies; // of the cuts on this path
    std::vector<int64_t> cut_floats; // per layer, per image
    std::vector<int64_t> macs_before; // per layer: MACs per image of the layers before it
    std::atomic<int64_t> passes_full{0}, passes_resumed{0}, layers_skipped{0};
    std::map<int, std::vector<float>> fp32_logits; // per split, images x classes

    Impl(Graph folded, std::string path, EvaluationData images, EvaluatorOptions opts)
        : graph(std::move(folded)), model_path(std::move(path)), options(std::move(opts)),
          data(std::move(images)), arena(std::max(1, options.workers)) {
        if (options.workers < 1)
            throw Error("evaluator: --workers must be at least 1, got " +
                        std::to_string(options.workers));
        if (options.batch < 1)
            throw Error("evaluator: batch size must be at least 1, got " +
                        std::to_string(options.batch));
        if (options.pass_images < 1)
            throw Error("evaluator: images per pass must be at least 1, got " +
                        std::to_string(options.pass_images));
        pass_images = std::min(options.pass_images, options.batch);
        layers = static_cast<int>(quantizable_layers(graph).size());
        cut_floats = cut_floats_per_image(graph);
        int64_t macs = 0;
        for (const Node* layer : quantizable_layers(graph)) {
            macs_before.push_back(macs);
            macs += node_macs(graph, *layer);
        }
        const auto start = Clock::now();
        calibration = std::make_shared<const Calibration>(calibrate(
            graph, data.calibration,
            make_calibration(options.calibration_method.name, options.calibration_method.args),
            options.batch));
        calibration_seconds = std::chrono::duration<double>(Clock::now() - start).count();
        // Only a data-aware quantizer reads the calibration images again (and keeps them).
        weights = std::make_shared<WeightCache>(
            graph,
            make_prepared_quantizer(options.weight_quantizer, graph,
                                    std::make_shared<const Dataset>(std::move(data.calibration)),
                                    options.quantizer_cache_dir),
            options.weight_cache_bytes);
        slots.resize(static_cast<size_t>(options.workers));
        dependencies = cut_dependencies_of();
        if (options.incremental_cache_bytes > 0)
            cuts = std::make_unique<CutCache>(options.incremental_cache_bytes, dependencies);
    }

    CutDependencies cut_dependencies_of() const {
        return options.path == ExecutionPath::integer ? cut_dependencies(graph)
                                                      : CutDependencies{};
    }

    const Dataset& split_data(Split split) const {
        switch (split) {
        case Split::validation: return data.validation;
        case Split::test: return data.test;
        default: break;
        }
        throw Error(std::string("evaluator: cannot score on the ") + split_name(split) +
                    " split; use validation (for a search) or test (for final reports)");
    }

    QuantizedNetwork& network(Slot& slot) {
        if (!slot.network)
            slot.network = std::make_unique<QuantizedNetwork>(graph, calibration, weights,
                                                              options.path, pass_images);
        return *slot.network;
    }

    // Decides where each candidate captures. A cut at layer L is worth storing when its prefix
    // (bits of layers < L) is shared with another candidate of this call or was seen in an
    // earlier call, and when resuming there saves at least incremental_min_macs_per_byte MACs per
    // byte stored; within a call, only the first candidate with that prefix captures it (the
    // others resume from it). One candidate's cuts are limited to half the cache, deepest first:
    // deep cuts are small and save the most work.
    std::vector<Candidate> prepare(std::span<const BitPolicy> policies, int64_t images) {
        std::vector<Candidate> candidates(policies.size());
        std::unordered_map<uint64_t, int> in_call;
        auto key = [](const Candidate& c, int layer) { return mix(c.prefix[layer], layer); };
        for (size_t i = 0; i < policies.size(); ++i) {
            Candidate& c = candidates[i];
            c.policy = std::make_shared<const BitPolicy>(policies[i]);
            c.prefix = prefix_hashes(policies[i], dependencies);
            c.capture.assign(static_cast<size_t>(layers), false);
            for (int l = 1; l < layers; ++l) ++in_call[key(c, l)];
        }
        if (cuts) {
            std::unordered_set<uint64_t> owned;
            const int64_t budget = options.incremental_cache_bytes / 2;
            for (Candidate& c : candidates) {
                int64_t bytes = 0;
                for (int l = layers - 1; l >= 1; --l) {
                    const uint64_t k = key(c, l);
                    if (!seen_prefixes.count(k) && in_call[k] < 2) continue;
                    const int64_t cut_bytes_per_image =
                        cut_floats[static_cast<size_t>(l)] * static_cast<int64_t>(sizeof(float));
                    if (macs_before[static_cast<size_t>(l)] <
                        options.incremental_min_macs_per_byte * cut_bytes_per_image)
                        continue; // storing costs more than recomputing saves
                    if (!owned.insert(k).second) continue; // an earlier candidate captures it
                    bytes += cut_floats[static_cast<size_t>(l)] * images *
                             static_cast<int64_t>(sizeof(float));
                    if (bytes > budget) break;
                    c.capture[static_cast<size_t>(l)] = true;
                }
            }
        }
        for (const Candidate& c : candidates)
            for (int l = 1; l < layers; ++l) seen_prefixes.insert(key(c, l));
        if (seen_prefixes.size() > 4'000'000) seen_prefixes.clear(); // bounded bookkeeping
        return candidates;
    }

    // The deepest cached cut for this candidate and pass, or nullptr.
    std::shared_ptr<const ActivationCut> find_cut(const Candidate& c, Split split, int64_t pass) {
        if (!cuts) return nullptr;
        for (int l = layers - 1; l >= 1; --l)
            if (auto cut = cuts->find({static_cast<int>(split), pass, l, c.prefix[l]}, *c.policy))
                return cut;
        return nullptr;
    }

    // Network passes per scoring batch: a batch runs as passes of net.batch() images.
    int64_t passes_per_batch() const {
        return (options.batch + pass_images - 1) / pass_images;
    }

    // One scoring batch: its passes in image order, every image's figures added in image order
    // (so the sums do not depend on the pass size).
    BatchResult run_batch(QuantizedNetwork& net, const Candidate& c, const Dataset& images,
                          Split split, int64_t batch, LogitSink sink) {
        const auto start = Clock::now();
        const int64_t end = std::min((batch + 1) * options.batch, images.count);
        BatchResult result;
        int64_t pass = batch * passes_per_batch();
        for (int64_t first = batch * options.batch; first < end; first += pass_images, ++pass)
            run_pass(net, c, images, split, {pass, first, std::min(pass_images, end - first)},
                     sink, result);
        result.seconds = std::chrono::duration<double>(Clock::now() - start).count();
        return result;
    }

    struct Pass {
        int64_t index = 0; // global: the cut cache's key
        int64_t first = 0, images = 0;
    };

    void run_pass(QuantizedNetwork& net, const Candidate& c, const Dataset& images, Split split,
                  Pass pass, LogitSink sink, BatchResult& result) {
        const float* logits = nullptr;
        int resumed_at = 0;
        if (auto cut = find_cut(c, split, pass.index)) {
            logits = net.resume(*cut);
            resumed_at = cut->layer;
            ++passes_resumed;
            layers_skipped += resumed_at;
        } else {
            logits = net.run(images.image(pass.first), pass.images);
            ++passes_full;
        }
        for (int l = resumed_at + 1; cuts && l < layers; ++l)
            if (c.capture[l])
                cuts->store({static_cast<int>(split), pass.index, l, c.prefix[l]}, c.policy,
                            std::make_shared<const ActivationCut>(net.capture(l)));
        const int64_t classes = net.num_classes();
        for (int64_t i = 0; i < pass.images; ++i) {
            const float* row = logits + i * classes;
            const int label = images.labels[static_cast<size_t>(pass.first + i)];
            result.correct += argmax(row, classes) == label;
            result.loss += cross_entropy(row, classes, label);
        }
        const int64_t values = pass.images * classes, at = pass.first * classes;
        if (sink.record) std::copy(logits, logits + values, sink.record + at);
        if (sink.reference) add_divergence(result, logits, sink.reference + at, values, classes);
    }

    static void add_divergence(BatchResult& result, const float* logits, const float* reference,
                               int64_t count, int64_t classes) {
        for (int64_t i = 0; i < count; i += classes)
            result.kl += softmax_kl(reference + i, logits + i, classes);
        for (int64_t i = 0; i < count; ++i) {
            const double r = reference[i], d = static_cast<double>(logits[i]) - r;
            result.signal += r * r;
            result.noise += d * d;
        }
    }

    void run_task(const Task& task, const std::vector<Candidate>& candidates, const Dataset& images,
                  Split split, LogitSink sink, std::vector<std::vector<BatchResult>>& results) {
        const int slot_index = tbb::this_task_arena::current_thread_index();
        if (slot_index < 0 || slot_index >= static_cast<int>(slots.size()))
            throw Failure("evaluator: task ran outside its arena's slots (internal error)");
        Slot& slot = slots[static_cast<size_t>(slot_index)];
        const Candidate& c = candidates[task.candidate];
        OmpThreadsScope threads(options.onednn_threads);
        QuantizedNetwork& net = network(slot);
        if (!slot.installed || !(*slot.installed == *c.policy)) {
            net.set_policy(*c.policy);
            slot.installed = c.policy;
        }
        for (int64_t b = task.first_batch; b < task.end_batch; ++b)
            results[task.candidate][static_cast<size_t>(b)] =
                run_batch(net, c, images, split, b, sink);
    }

    // Candidates that capture cuts for others run first, each spread over all workers batch by
    // batch (so their cuts exist before the others look for them); then the rest, one task per
    // candidate, or spread over the workers when there are fewer candidates than workers.
    std::vector<Task> plan_tasks(const std::vector<Candidate>& candidates, int64_t batches) const {
        auto captures = [](const Candidate& c) {
            return std::find(c.capture.begin(), c.capture.end(), true) != c.capture.end();
        };
        const int64_t spread = std::min<int64_t>(options.workers, batches);
        size_t others = 0;
        for (const Candidate& c : candidates) others += !captures(c);
        const int64_t other_chunks = others >= static_cast<size_t>(options.workers) ? 1 : spread;
        std::vector<Task> tasks;
        auto add = [&](size_t i, int64_t chunks) {
            for (int64_t k = 0; k < chunks; ++k)
                tasks.push_back({i, batches * k / chunks, batches * (k + 1) / chunks});
        };
        for (size_t i = 0; i < candidates.size(); ++i)
            if (captures(candidates[i])) add(i, spread);
        for (size_t i = 0; i < candidates.size(); ++i)
            if (!captures(candidates[i])) add(i, other_chunks);
        return tasks;
    }

    std::vector<Score> evaluate(std::span<const BitPolicy> policies, Split split) {
        const Dataset& images = split_data(split);
        const std::vector<int64_t> data_shape{images.channels, images.height, images.width};
        if (graph.input_shape != data_shape)
            throw Error("evaluator: the model's input shape differs from the images of the " +
                        std::string(split_name(split)) + " split");
        const int64_t classes = Tensor::count(graph.shapes.at(graph.output));
        for (int64_t i = 0; i < images.count; ++i)
            if (images.labels[static_cast<size_t>(i)] >= classes)
                throw Error("evaluator: image " + std::to_string(i) + " of the " +
                            split_name(split) + " split has label " +
                            std::to_string(images.labels[static_cast<size_t>(i)]) +
                            " but the model has only " + std::to_string(classes) + " classes");
        std::vector<Score> scores(policies.size());
        for (size_t i = 0; i < policies.size(); ++i) {
            try {
                scores[i].costs = compute_costs(graph, policies[i]); // validates the policy
            } catch (const Error& e) {
                throw Error("candidate " + std::to_string(i) + " (" + policies[i].to_string() +
                                "): " + e.what(),
                            e.kind());
            }
        }
        const LogitSink sink{reference_logits(split).data(), nullptr};
        return run(policies, split, sink, std::move(scores));
    }

    // The FP32 (W32A32) logits of every image of `split`, computed once.
    const std::vector<float>& reference_logits(Split split) {
        std::vector<float>& logits = fp32_logits[static_cast<int>(split)];
        if (logits.empty()) {
            const Dataset& images = split_data(split);
            logits.assign(static_cast<size_t>(images.count * num_classes()), 0.0f);
            const BitPolicy fp32 = BitPolicy::uniform(graph, float_bits, float_bits);
            std::vector<Score> score(1);
            score[0].costs = compute_costs(graph, fp32);
            run(std::span<const BitPolicy>(&fp32, 1), split, {nullptr, logits.data()},
                std::move(score));
        }
        return logits;
    }

    int64_t num_classes() const { return Tensor::count(graph.shapes.at(graph.output)); }

    std::vector<Score> run(std::span<const BitPolicy> policies, Split split, LogitSink sink,
                           std::vector<Score> scores) {
        const Dataset& images = split_data(split);
        const std::vector<Candidate> candidates = prepare(policies, images.count);
        const int64_t batches = (images.count + options.batch - 1) / options.batch;
        std::vector<std::vector<BatchResult>> results(
            policies.size(), std::vector<BatchResult>(static_cast<size_t>(batches)));
        const std::vector<Task> tasks = plan_tasks(candidates, batches);
        // Workers take tasks in order from a shared counter, so the capturing candidates run first.
        std::atomic<size_t> next{0};
        arena.execute([&] {
            tbb::parallel_for(0, options.workers, [&](int) {
                for (size_t t = next++; t < tasks.size(); t = next++)
                    run_task(tasks[t], candidates, images, split, sink, results);
            });
        });
        for (size_t i = 0; i < policies.size(); ++i) {
            Score& s = scores[i];
            double loss = 0.0, kl = 0.0, signal = 0.0, noise = 0.0;
            for (const BatchResult& r : results[i]) { // batch order: deterministic sums
                s.correct += r.correct;
                loss += r.loss;
                kl += r.kl;
                signal += r.signal;
                noise += r.noise;
                s.seconds += r.seconds;
            }
            s.logit_sqnr_db = noise > 0.0 ? 10.0 * std::log10(signal / noise)
                                          : std::numeric_limits<double>::infinity();
            s.images = images.count;
            s.split = split;
            s.path = options.path;
            if (s.images > 0) {
                s.accuracy_percent = 100.0 * static_cast<double>(s.correct) / static_cast<double>(s.images);
                s.mean_loss = loss / static_cast<double>(s.images);
                s.mean_kl = kl / static_cast<double>(s.images);
            }
        }
        return scores;
    }
};

Evaluator::Evaluator(Graph folded, std::string model_path, const std::string& data_dir,
                     EvaluatorOptions options)
    : Evaluator(std::move(folded), std::move(model_path),
                load_evaluation_data(data_dir, options.calibration_images), options) {}

Evaluator::Evaluator(Graph folded, std::string model_path, EvaluationData data,
                     EvaluatorOptions options)
    : impl_(std::make_unique<Impl>(std::move(folded), std::move(model_path), std::move(data),
                                   std::move(options))) {}

Evaluator::~Evaluator() = default;

std::vector<Score> Evaluator::evaluate(std::span<const BitPolicy> candidates, Split split) {
    return impl_->evaluate(candidates, split);
}

Score Evaluator::evaluate(const BitPolicy& candidate, Split split) {
    return impl_->evaluate(std::span<const BitPolicy>(&candidate, 1), split).front();
}

std::vector<std::string> Evaluator::path_decisions(const BitPolicy& policy) {
    policy.validate(impl_->graph);
    Impl::Slot& slot = impl_->slots.front();
    QuantizedNetwork& net = impl_->network(slot);
    net.set_policy(policy);
    slot.installed = std::make_shared<const BitPolicy>(policy);
    return net.path_decisions();
}

const Graph& Evaluator::graph() const { return impl_->graph; }
const std::string& Evaluator::model_path() const { return impl_->model_path; }
const EvaluatorOptions& Evaluator::options() const { return impl_->options; }
const Calibration& Evaluator::calibration() const { return *impl_->calibration; }
double Evaluator::calibration_seconds() const { return impl_->calibration_seconds; }
const Dataset& Evaluator::data(Split split) const { return impl_->split_data(split); }
const WeightCache& Evaluator::weight_cache() const { return *impl_->weights; }

IncrementalStats Evaluator::incremental_stats() const {
    IncrementalStats stats;
    stats.passes_full = impl_->passes_full;
    stats.passes_resumed = impl_->passes_resumed;
    stats.layers_skipped = impl_->layers_skipped;
    if (impl_->cuts) impl_->cuts->add_to(stats);
    return stats;
}

} // namespace mps
