#include "search/candidate_scorer.h"

#include "evaluator/base/error.h"
#include "evaluator/ir/costs.h"

#include <cstring>

namespace mps {

namespace {

constexpr size_t score_bytes = 8 + 5 * 8 + 2 * 8 + 1 + 1;

template <class T>
void put(Bytes& out, const T& value) {
    const auto* p = reinterpret_cast<const unsigned char*>(&value);
    out.insert(out.end(), p, p + sizeof(T));
}

// Reads values off a message front to back; running past its end is a malformed message.
class Reader {
public:
    Reader(std::span<const unsigned char> bytes, const char* what) : bytes_(bytes), what_(what) {}
    template <class T>
    T get() {
        if (bytes_.size() - at_ < sizeof(T))
            throw Failure(std::string(what_) + " message of " + std::to_string(bytes_.size()) +
                          " bytes ends early (the processes disagree about the model)");
        T value;
        std::memcpy(&value, bytes_.data() + at_, sizeof(T));
        at_ += sizeof(T);
        return value;
    }
    bool done() const { return at_ == bytes_.size(); }

private:
    std::span<const unsigned char> bytes_;
    const char* what_;
    size_t at_ = 0;
};

} // namespace

Bytes encode_candidate(const CandidateMessage& message) {
    Bytes out;
    put(out, message.index);
    put(out, static_cast<uint8_t>(message.split));
    for (const LayerBits& layer : message.policy.layers) {
        put(out, static_cast<uint8_t>(layer.activation_bits));
        for (int bits : layer.weight_bits) put(out, static_cast<uint8_t>(bits));
    }
    return out;
}

CandidateMessage decode_candidate(std::span<const unsigned char> bytes, const Graph& graph) {
    Reader in(bytes, "candidate");
    CandidateMessage message;
    message.index = in.get<int64_t>();
    message.split = static_cast<Split>(in.get<uint8_t>());
    for (const Node* node : quantizable_layers(graph)) {
        LayerBits layer;
        layer.name = node->name;
        layer.activation_bits = in.get<uint8_t>();
        layer.weight_bits.resize(static_cast<size_t>(kernel_count(*node)));
        for (int& bits : layer.weight_bits) bits = in.get<uint8_t>();
        message.policy.layers.push_back(std::move(layer));
    }
    if (!in.done())
        throw Failure("candidate message of " + std::to_string(bytes.size()) +
                      " bytes is longer than the model's layers (the processes disagree about "
                      "the model)");
    return message;
}

Bytes encode_score(const ScoreMessage& message) {
    const Score& s = message.score;
    Bytes out;
    out.reserve(score_bytes);
    put(out, message.index);
    for (double value : {s.accuracy_percent, s.mean_loss, s.mean_kl, s.logit_sqnr_db, s.seconds})
        put(out, value);
    put(out, s.correct);
    put(out, s.images);
    put(out, static_cast<uint8_t>(s.split));
    put(out, static_cast<uint8_t>(s.path));
    return out;
}

ScoreMessage decode_score(std::span<const unsigned char> bytes, const Graph& graph,
                          std::span<const BitPolicy> candidates) {
    if (bytes.size() != score_bytes)
        throw Failure("score message of " + std::to_string(bytes.size()) + " bytes, expected " +
                      std::to_string(score_bytes));
    Reader in(bytes, "score");
    ScoreMessage message;
    message.index = in.get<int64_t>();
    if (message.index < 0 || message.index >= static_cast<int64_t>(candidates.size()))
        throw Failure("score message for candidate " + std::to_string(message.index) + " of a batch of " +
                      std::to_string(candidates.size()));
    Score& s = message.score;
    for (double* value : {&s.accuracy_percent, &s.mean_loss, &s.mean_kl, &s.logit_sqnr_db, &s.seconds})
        *value = in.get<double>();
    s.correct = in.get<int64_t>();
    s.images = in.get<int64_t>();
    s.split = static_cast<Split>(in.get<uint8_t>());
    s.path = static_cast<ExecutionPath>(in.get<uint8_t>());
    s.costs = compute_costs(graph, candidates[static_cast<size_t>(message.index)]);
    return message;
}

} // namespace mps
