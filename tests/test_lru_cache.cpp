// LruCache (evaluator/base/lru_cache.h): recency order, eviction by total cost, the newest entry never
// evicted, replacement, peek without touching, moves.
#include "evaluator/base/lru_cache.h"

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace mps;

TEST_CASE("lru_cache: a count-bounded cache evicts the least recently used entry") {
    LruCache<int, std::string> cache(2); // cost 1 each: two entries
    CHECK(cache.insert(1, "one") == 0);
    CHECK(cache.insert(2, "two") == 0);
    REQUIRE(cache.find(1) != nullptr); // 1 is now more recent than 2
    CHECK(*cache.find(1) == "one");
    CHECK(cache.insert(3, "three") == 1); // evicts 2
    CHECK(cache.find(2) == nullptr);
    CHECK(cache.find(1) != nullptr);
    CHECK(cache.find(3) != nullptr);
    CHECK(cache.size() == 2);
    CHECK(cache.cost() == 2);
    CHECK(cache.capacity() == 2);
}

TEST_CASE("lru_cache: peek does not change the order, insert replaces, erase removes") {
    LruCache<int, int> cache(2);
    cache.insert(1, 10);
    cache.insert(2, 20);
    REQUIRE(cache.peek(1) != nullptr);
    CHECK(*cache.peek(1) == 10);
    cache.insert(3, 30); // 1 was only peeked at: still the least recent, so it goes
    CHECK(cache.peek(1) == nullptr);
    CHECK(cache.peek(2) != nullptr);

    CHECK(cache.insert(2, 21) == 0); // a replacement, no eviction
    CHECK(*cache.peek(2) == 21);
    CHECK(cache.size() == 2);
    CHECK(cache.insert(4, 40) == 1); // 3 is now the least recent
    CHECK(cache.peek(3) == nullptr);

    CHECK(cache.erase(2));
    CHECK_FALSE(cache.erase(2));
    CHECK(cache.size() == 1);
    CHECK(cache.cost() == 1);
}

TEST_CASE("lru_cache: by cost, several entries go and the newest always stays") {
    LruCache<std::string, std::vector<int>> cache(10);
    cache.insert("a", {1}, 4);
    cache.insert("b", {2}, 4);
    CHECK(cache.cost() == 8);
    CHECK(cache.insert("c", {3}, 7) == 2); // 15, then 11 without a: still over, b goes too
    CHECK(cache.size() == 1);
    CHECK(cache.cost() == 7);
    cache.insert("e", {4}, 3); // 10: at the capacity is within it
    CHECK(cache.size() == 2);
    CHECK(cache.erase("e"));
    // Dearer than the whole capacity: kept alone until the next insert.
    CHECK(cache.insert("huge", {4}, 25) == 1);
    CHECK(cache.size() == 1);
    CHECK(cache.cost() == 25);
    REQUIRE(cache.find("huge") != nullptr);
    CHECK(cache.insert("d", {5}, 1) == 1);
    CHECK(cache.find("huge") == nullptr);
    CHECK(cache.cost() == 1);
    // Replacing an entry updates the total by the difference.
    cache.insert("d", {6}, 3);
    CHECK(cache.cost() == 3);
    CHECK(*cache.find("d") == std::vector<int>{6});
}

TEST_CASE("lru_cache: a moved cache keeps its entries and order") {
    LruCache<int, int> first(2);
    first.insert(1, 10);
    first.insert(2, 20);
    first.find(1);
    LruCache<int, int> moved(std::move(first));
    CHECK(moved.insert(3, 30) == 1); // 2 was the least recent
    CHECK(moved.peek(2) == nullptr);
    CHECK(*moved.peek(1) == 10);
    std::vector<LruCache<int, int>> per_layer;
    for (int l = 0; l < 5; ++l) per_layer.emplace_back(1); // reallocations move them
    per_layer[0].insert(7, 70);
    CHECK(*per_layer[0].find(7) == 70);
}
