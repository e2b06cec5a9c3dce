#pragma once
// OnceMap: values computed once per key, on first request, shared by every thread. Different keys
// are computed in parallel; a thread asking for a key being computed waits for that computation.
// If it throws, the exception reaches its caller and the next request computes again. Entries are
// never removed, so a returned reference stays valid as long as the map.
#include <map>
#include <memory>
#include <mutex>

namespace mps {

template <typename Key, typename Value>
class OnceMap {
public:
    // The value of `key`, computed by compute() (returning a Value) if no request made it yet.
    template <typename Compute>
    const Value& get(const Key& key, Compute&& compute) const {
        std::shared_ptr<Entry> entry;
        {
            std::lock_guard lock(mutex_);
            auto& slot = entries_[key];
            if (!slot) slot = std::make_shared<Entry>();
            entry = slot;
        }
        std::call_once(entry->once, [&] { entry->value = compute(); });
        return entry->value;
    }

private:
    struct Entry {
        std::once_flag once;
        Value value;
    };
    mutable std::mutex mutex_;
    mutable std::map<Key, std::shared_ptr<Entry>> entries_;
};

} // namespace mps
