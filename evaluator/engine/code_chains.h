#pragma once
// Code chains: where the integer path keeps activations as 8-bit codes from one quantizable layer
// to the next. A chain runs from a quantizable layer P (its stage, with the fused ReLU / Clip)
// through max pools and flattens only, each value read by nothing else, to the input of one other
// quantizable layer M. When P and M both run on the integer path, P's primitive writes M's b-bit
// codes directly (docs/evaluator.md, "Requantization"): the max pools and the flatten work on
// the codes (quantization is monotone, so max commutes with it) and no float32 tensor is written
// between the two layers.
//
// Such a chain changes what an activation cut holds: a cut before a layer L that a chain crosses
// (stage(P) < stage(L) <= stage(M)) holds M's codes, which depend on M's bits as well as on the
// layers before L. cut_dependencies() lists those layers M for every L. Internal to evaluator/.
#include "evaluator/engine/graph_builder.h"
#include "evaluator/ir/graph.h"

#include <string>
#include <vector>

namespace mps {

struct CodeChain {
    int producer = 0;                // quantizable layer index of P
    int consumer = 0;                // ... and of M
    std::vector<int> stages;         // the max pool / flatten stages between them, in order
    std::vector<std::string> values; // P's stage output, then each stage's output (M's input last)
};

// The chains of a graph's stages (fuse_stages with sums, stage.layer set for every
// quantizable layer); at most one starts at each layer and at most one ends at each.
std::vector<CodeChain> find_code_chains(const Graph& graph, const std::vector<onednn::Stage>& stages,
                                        const onednn::Readers& readers);

// For every quantizable layer L (graph order) of a BN-folded graph, the layers M >= L whose bits
// a cut before L depends on besides the layers before L: the consumers of the chains crossing
// it (integer path only; the other paths have none).
std::vector<std::vector<int>> cut_dependencies(const Graph& folded);

} // namespace mps
