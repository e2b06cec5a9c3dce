// WeightCache: quantize-dequantized weight tensors per (layer, per-kernel bit vector), shared by
// every worker of an evaluation, least recently used entries evicted beyond a byte budget.
#include "evaluator/quant/weight_cache.h"

#include "evaluator/base/error.h"
#include "evaluator/base/lru_cache.h"
#include "evaluator/ir/bit_policy.h"

#include <atomic>

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
    explicit Impl(int64_t max_bytes) : cache(max_bytes) {}

    std::shared_ptr<const WeightQuantizer> quantizer;
    std::map<std::string, const Node*> layers; // quantizable layers by name

    mutable std::mutex mutex;
    LruCache<Key, std::shared_ptr<const Tensor>, KeyHash> cache; // by bytes, under the mutex
    std::atomic<int64_t> hits{0}, misses{0};

    // Under the lock: the entry for `key` (now the most recent), or nullptr.
    std::shared_ptr<const Tensor> find(const Key& key) {
        const auto* weights = cache.find(key);
        return weights ? *weights : nullptr;
    }

    // Under the lock: inserts, or returns the entry another thread inserted meanwhile.
    std::shared_ptr<const Tensor> insert(Key key, std::shared_ptr<const Tensor> weights) {
        if (auto existing = find(key)) return existing;
        const int64_t bytes = tensor_bytes(*weights);
        cache.insert(std::move(key), weights, bytes);
        return weights;
    }
};

WeightCache::WeightCache(const Graph& folded, std::shared_ptr<const WeightQuantizer> quantizer,
                         int64_t max_bytes)
    : impl_(std::make_unique<Impl>(max_bytes)) {
    if (!quantizer) throw Error("WeightCache: no weight quantizer given");
    impl_->quantizer = std::move(quantizer);
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
std::shared_ptr<const WeightQuantizer> WeightCache::shared_quantizer() const {
    return impl_->quantizer;
}
int64_t WeightCache::hits() const { return impl_->hits; }
int64_t WeightCache::misses() const { return impl_->misses; }

int64_t WeightCache::bytes() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->cache.cost();
}

int64_t WeightCache::entries() const {
    std::lock_guard lock(impl_->mutex);
    return static_cast<int64_t>(impl_->cache.size());
}

} // namespace mps
