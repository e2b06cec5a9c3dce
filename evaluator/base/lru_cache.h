#pragma once
// LruCache<Key, Value>: a least-recently-used cache bounded by a total cost, the one behind the
// weight cache (bytes), the incremental evaluation's activation cuts (bytes) and a quantized
// network's laid-out weights per layer (a count: cost 1 per entry).
//
// Contract:
//   - find(key): the value stored under `key`, now the most recently used, or nullptr.
//     peek(key): the same without changing the order (for a caller that may still reject it).
//   - insert(key, value, cost): stores `value` under `key` (replacing what was there) as the most
//     recently used, then evicts from the least recently used end while the total cost exceeds
//     the capacity, but never the entry just inserted: one entry dearer than the whole capacity
//     stays alone until the next insert (a caller that must not keep it checks the cost first).
//     Returns how many entries it evicted.
//   - A pointer from find / peek stays valid until its entry is evicted, replaced or erased.
//   - Not thread-safe: a cache shared between threads is used under its owner's lock.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <unordered_map>
#include <utility>

namespace mps {

template <typename Key, typename Value, typename Hash = std::hash<Key>,
          typename Equal = std::equal_to<Key>>
class LruCache {
public:
    explicit LruCache(int64_t capacity) : capacity_(capacity) {}
    // The index points into the list: a copy would point into the original.
    LruCache(const LruCache&) = delete;
    LruCache& operator=(const LruCache&) = delete;
    LruCache(LruCache&&) noexcept = default;
    LruCache& operator=(LruCache&&) noexcept = default;

    Value* find(const Key& key) {
        const auto it = index_.find(key);
        if (it == index_.end()) return nullptr;
        recency_.splice(recency_.begin(), recency_, it->second);
        return &it->second->value;
    }

    const Value* peek(const Key& key) const {
        const auto it = index_.find(key);
        return it == index_.end() ? nullptr : &it->second->value;
    }

    size_t insert(Key key, Value value, int64_t cost = 1) {
        erase(key);
        recency_.push_front({key, std::move(value), cost});
        index_.emplace(std::move(key), recency_.begin());
        cost_ += cost;
        size_t evicted = 0;
        while (cost_ > capacity_ && recency_.size() > 1) {
            erase(recency_.back().key);
            ++evicted;
        }
        return evicted;
    }

    // True when `key` was there.
    bool erase(const Key& key) {
        const auto it = index_.find(key);
        if (it == index_.end()) return false;
        cost_ -= it->second->cost;
        recency_.erase(it->second);
        index_.erase(it);
        return true;
    }

    size_t size() const { return recency_.size(); }
    int64_t cost() const { return cost_; } // of the entries held
    int64_t capacity() const { return capacity_; }

private:
    struct Entry {
        Key key;
        Value value;
        int64_t cost = 0;
    };
    int64_t capacity_;
    int64_t cost_ = 0;
    std::list<Entry> recency_; // most recently used first
    std::unordered_map<Key, typename std::list<Entry>::iterator, Hash, Equal> index_;
};

} // namespace mps
