#include "evaluator/engine/code_chains.h"

#include <map>
#include <optional>

namespace mps {

namespace {

// The chain starting at layer stage `from`, or nothing when its output goes anywhere but through
// max pools and flattens to exactly one quantizable layer's (only) input.
std::optional<CodeChain> chain_from(const Graph& graph, const std::vector<onednn::Stage>& stages,
                                    const onednn::Readers& readers,
                                    const std::map<const Node*, int>& stage_of, int from) {
    CodeChain chain;
    chain.producer = stages[static_cast<size_t>(from)].layer;
    std::string value = stages[static_cast<size_t>(from)].output;
    for (;;) {
        chain.values.push_back(value);
        auto it = readers.find(value);
        if (value == graph.output || it == readers.end() || it->second.size() != 1)
            return std::nullopt;
        const Node* reader = &graph.nodes[static_cast<size_t>(it->second[0])];
        auto s = stage_of.find(reader);
        if (s == stage_of.end()) return std::nullopt; // fused into another stage
        const onednn::Stage& stage = stages[static_cast<size_t>(s->second)];
        if (stage.layer >= 0) {
            if (reader->inputs.size() != 1 || reader->inputs[0] != value) return std::nullopt;
            chain.consumer = stage.layer;
            return chain;
        }
        if (reader->op != Op::max_pool && reader->op != Op::flatten) return std::nullopt;
        chain.stages.push_back(s->second);
        value = stage.output;
    }
}

} // namespace

std::vector<CodeChain> find_code_chains(const Graph& graph, const std::vector<onednn::Stage>& stages,
                                        const onednn::Readers& readers) {
    std::map<const Node*, int> stage_of;
    for (size_t s = 0; s < stages.size(); ++s) stage_of[stages[s].node] = static_cast<int>(s);
    std::vector<CodeChain> chains;
    for (size_t s = 0; s < stages.size(); ++s)
        if (stages[s].layer >= 0)
            if (auto chain = chain_from(graph, stages, readers, stage_of, static_cast<int>(s)))
                chains.push_back(std::move(*chain));
    return chains;
}

std::vector<std::vector<int>> cut_dependencies(const Graph& folded) {
    Graph graph = folded;
    infer_shapes(graph);
    const onednn::Readers readers = onednn::readers_of(graph);
    std::vector<onednn::Stage> stages = onednn::fuse_stages(graph, readers, true);
    std::vector<int> layer_stage;
    for (size_t s = 0; s < stages.size(); ++s)
        if (is_quantizable(*stages[s].node)) {
            stages[s].layer = static_cast<int>(layer_stage.size());
            layer_stage.push_back(static_cast<int>(s));
        }
    std::vector<std::vector<int>> dependencies(layer_stage.size());
    for (const CodeChain& chain : find_code_chains(graph, stages, readers))
        for (size_t l = 0; l < layer_stage.size(); ++l) {
            const int stage = layer_stage[l];
            if (layer_stage[static_cast<size_t>(chain.producer)] < stage &&
                stage <= layer_stage[static_cast<size_t>(chain.consumer)])
                dependencies[l].push_back(chain.consumer);
        }
    return dependencies;
}

} // namespace mps
