#pragma once
// The one place that turns Graph nodes into oneDNN primitives, for every engine that runs a graph
// forward: InferenceEngine (float32), QuantizedNetwork (fake-quant and integer) and, for the
// convolution geometry and layout choice, the training network. An engine decides its stages
// (which nodes fuse) and how its quantizable layers run; everything else is built here:
//   - fuse_stages: a ReLU / Clip that is the sole reader of a conv, inner product or add output
//     becomes its eltwise post-op; optionally an add that is a conv's sole reader joins the
//     conv's stage (the float engine accumulates in place with a sum post-op; the quantized
//     network adds the other operand as a binary post-op, which keeps every value intact for its
//     activation cuts);
//   - NodeBuilder: pooling, add / mul, concat, the unary activations (ReLU, Clip, sigmoid, hard
//     sigmoid, hard swish), the channel ops (affine, shuffle, slice) and flatten, with the
//     reorders between layouts;
//   - conv_geometry and first_fast: a conv's oneDNN dimensions, and the layout ladder that offers
//     oneDNN layouts in order and keeps the first that is not its slow reference kernel.
// Internal to evaluator/.
#include "evaluator/engine/onednn_util.h"
#include "evaluator/ir/graph.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mps::onednn {

// One primitive with its arguments.
struct Step {
    dnnl::primitive primitive;
    std::unordered_map<int, memory> args;
    void execute(dnnl::stream& stream) { primitive.execute(stream, args); }
};

// The graph's readers of each value, as node indices in execution order.
using Readers = std::map<std::string, std::vector<int>>;
Readers readers_of(const Graph& graph);

// A unit of execution: one graph node plus the nodes fused into it.
struct Stage {
    const Node* node = nullptr;
    int index = 0;                 // position of `node` in graph.nodes
    const Node* sum_add = nullptr; // conv only: an add fused into the conv's stage...
    std::string sum_operand;       // ...and its other operand
    const Node* eltwise = nullptr; // relu / clip fused as eltwise post-op
    std::string output;            // value the stage finally produces
    int layer = -1;                // the engine's quantizable layer index, if it has one
};
std::vector<Stage> fuse_stages(const Graph& graph, const Readers& readers, bool fuse_sums);

// The memories of one batch size's plan.
struct PlanMemory {
    int64_t n = 0;
    memory input; // the user's images, nchw; handle set per run
    std::map<std::string, memory> values;
    std::vector<std::pair<std::string, memory>> converted; // a value re-laid out for a consumer
    std::vector<memory> storage; // buffers reached only through views, kept alive here
};

// The plans of an engine by batch size, each built on first use.
template <typename Plan>
class PlansBySize {
public:
    template <typename Build>
    Plan& at(int64_t n, Build build) {
        auto it = plans_.find(n);
        if (it == plans_.end()) it = plans_.emplace(n, build(n)).first;
        return *it->second;
    }

private:
    std::map<int64_t, std::unique_ptr<Plan>> plans_;
};

// Builds the primitives of the nodes that are not quantizable layers. Each build_* appends its
// steps to `steps` and records the stage's output memory in `plan.values`.
class NodeBuilder {
public:
    NodeBuilder(const Graph& graph, const Readers& readers, const dnnl::engine& engine)
        : graph_(graph), readers_(readers), engine_(engine) {}

    // Starts a plan for batches of n: its input memory (the user's nchw images; the handle is
    // set per run) as the graph input's value.
    void begin(PlanMemory& plan, int64_t n) const;

    void build_pool(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;
    // add and mul (with a fused ReLU / Clip for add); mul may broadcast a [C, 1, 1] operand.
    void build_binary(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;
    // concat along channels, N inputs.
    void build_concat(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;
    // relu, clip, sigmoid, hard_sigmoid, hard_swish.
    void build_eltwise(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;
    // channel_affine (a batch normalization with mean 0, variance 1, epsilon 0), channel_shuffle
    // (oneDNN's shuffle) and channel_slice (a reorder from a view of the value laid out nchw).
    void build_channel_op(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;
    // Free when only inner products read it (they take the 4-D memory directly); otherwise the
    // value is laid out row-major and viewed as [n, features].
    void build_flatten(PlanMemory& plan, const Stage& stage, std::vector<Step>& steps) const;

    // `value` in layout `want`: its own memory when it already is, else a reordered copy (one per
    // value and layout, shared by all consumers asking for it).
    memory as_layout(PlanMemory& plan, std::vector<Step>& steps, const std::string& value,
                     const memory::desc& want) const;
    // `source` as a row-major [n, features] memory: a view of the same buffer when it already is
    // row-major, else a reordered copy. The user's input buffer changes every run: copied.
    memory row_major_view(PlanMemory& plan, std::vector<Step>& steps, const memory& source) const;

private:
    std::pair<std::string, std::string> binary_operands(const Node& node) const;
    void build_channel_affine(PlanMemory& plan, const Node& node, std::vector<Step>& steps) const;
    void build_channel_shuffle(PlanMemory& plan, const Node& node, std::vector<Step>& steps) const;
    void build_channel_slice(PlanMemory& plan, const Node& node, std::vector<Step>& steps) const;
    // `values` as a plain 1-D memory owned by the plan.
    memory channel_constant(PlanMemory& plan, const std::vector<float>& values) const;

    const Graph& graph_;
    const Readers& readers_;
    dnnl::engine engine_;
};

// A reorder step from `from` to `to`.
Step reorder_step(const memory& from, const memory& to);

// A conv node's oneDNN geometry: weights {O, I, KH, KW} or, grouped, {G, O/G, I, KH, KW};
// dilations oneDNN-style (0 = dense).
struct ConvGeometry {
    memory::dims weights, strides, dilates, pad_l, pad_r;
    memory::format_tag weights_tag; // oihw or goihw: the IR's row-major weights
};
ConvGeometry conv_geometry(const Node& conv);
// A direct forward convolution of that geometry; with a bias when `bias` is not null.
dnnl::convolution_forward::desc conv_forward_desc(const ConvGeometry& geometry,
                                                  dnnl::prop_kind prop, const memory::desc& src,
                                                  const memory::desc& weights,
                                                  const memory::desc* bias,
                                                  const memory::desc& dst);

// The layout ladder: make(0), make(1), ... until one gives a primitive (descriptor) that `slow`
// does not reject; when every one is slow, the first that oneDNN could create. make(i) may
// return an empty descriptor or throw dnnl::error for a layout oneDNN refuses; when none could
// be created at all, the result is empty (or the last error is thrown again, if one was).
template <typename Pd, typename Make, typename Slow>
Pd first_fast(size_t count, Make make, Slow slow) {
    std::optional<Pd> first;
    std::optional<dnnl::error> last_error;
    for (size_t i = 0; i < count; ++i) {
        try {
            Pd candidate = make(i);
            if (!candidate) continue;
            if (!slow(candidate)) return candidate;
            if (!first) first = std::move(candidate);
        } catch (const dnnl::error& e) {
            last_error = e;
        }
    }
    if (first) return *first;
    if (last_error) throw *last_error;
    return Pd();
}

} // namespace mps::onednn
