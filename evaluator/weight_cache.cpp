// WeightCache: quantize-dequantized weight tensors per (layer, per-kernel bit vector), shared by
// every worker of an evaluation, least recently used entries evicted beyond a byte budget.
#include "evaluator/weight_cache.h"

#include "evaluator/bit_policy.h"
#include "evaluator/error.h"

#include <atomic>
#include <list>
#include <unordered_map>

namespace mps {

namespace {

struct Key {
    std::string layer;
    std::vector<int> bits;
    bool operator==(const Key&) const = default;
};

struct KeyHash {
    size_t operator()(const Key& key) const noexcept {
        size_t h = std::hash<std::string>()(key.layer);
        for (int b : key.bits) h = h * 1099511628211ULL ^ static_cast<size_t>(b + 1);
        return h;
    }
};

int64_t tensor_bytes(const Tensor& t) { return t.numel() * static_cast<int64_t>(sizeof(float)); }

} // namespace

struct WeightCache::Impl {
    struct Entry {
        Key key;
        std::shared_ptr<const Tensor> weights;
    };
    std::shared_ptr<const WeightQuantizer> quantizer;
    std::map<std::string, const Node*> layers; // quantizable layers by name
    int64_t max_bytes = 0;

    mutable std::mutex mutex;
    std::list<Entry> recency; // most recently used first
    std::unordered_map<Key, std::list<Entry>::iterator, KeyHash> index;
    int64_t bytes = 0;
    std::atomic<int64_t> hits{0}, misses{0};

    // Under the lock: the entry for `key` moved to the front, or nullptr.
    std::shared_ptr<const Tensor> find(const Key& key) {
        auto it = index.find(key);
        if (it == index.end()) return nullptr;
        recency.splice(recency.begin(), recency, it->second);
        return it->second->weights;
    }

    // Under the lock: inserts (or returns the entry another thread inserted meanwhile) and evicts
    // from the back until the budget holds (the new entry itself is never evicted here).
    std::shared_ptr<const Tensor> insert(Key key, std::shared_ptr<const Tensor> weights) {
        if (auto existing = find(key)) return existing;
        bytes += tensor_bytes(*weights);
        recency.push_front({key, weights});
        index.emplace(std::move(key), recency.begin());
        while (bytes > max_bytes && recency.size() > 1) {
            Entry& victim = recency.back();
            bytes -= tensor_bytes(*victim.weights);
            index.erase(victim.key);
            recency.pop_back();
        }
        return weights;
    }
};

WeightCache::WeightCache(const Graph& folded, std::shared_ptr<const WeightQuantizer> quantizer,
                         int64_t max_bytes)
    : impl_(std::make_unique<Impl>()) {
    if (!quantizer) throw Error("WeightCache: no weight quantizer given");
    impl_->quantizer = std::move(quantizer);
    impl_->max_bytes = max_bytes;
    for (const Node* layer : quantizable_layers(folded)) impl_->layers[layer->name] = layer;
}

WeightCache::~WeightCache() = default;

std::shared_ptr<const Tensor> WeightCache::get(const std::string& layer,
                                               const std::vector<int>& bits) {
    Key key{layer, bits};
    {
        std::lock_guard lock(impl_->mutex);
        if (auto hit = impl_->find(key)) {
            ++impl_->hits;
            return hit;
        }
    }
    ++impl_->misses;
    auto it = impl_->layers.find(layer);
    if (it == impl_->layers.end())
        throw Error("WeightCache: '" + layer +
                    "' is not a conv or fully connected layer of the model");
    auto weights = std::make_shared<const Tensor>(
        quantize_weights(*impl_->quantizer, it->second->weight, bits)); // outside the lock
    std::lock_guard lock(impl_->mutex);
    return impl_->insert(std::move(key), std::move(weights));
}

const WeightQuantizer& WeightCache::quantizer() const { return *impl_->quantizer; }
int64_t WeightCache::hits() const { return impl_->hits; }
int64_t WeightCache::misses() const { return impl_->misses; }

int64_t WeightCache::bytes() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->bytes;
}

int64_t WeightCache::entries() const {
    std::lock_guard lock(impl_->mutex);
    return static_cast<int64_t>(impl_->recency.size());
}

} // namespace mps
