#pragma once
// Graph: the model IR every part of mpsearch shares (import, export, inference, training, costs).
//
// A CNN is a list of nodes in topological order over named values. Each node has one output value
// and reads one input value, two for add and mul, or two or more for concat (accepts_inputs());
// parameters live inside the node. Batch size is not part of
// the graph: shapes are per image ({C, H, W} or {C}), the batch dimension is added by the engines.
//
// Contract:
//   - node names are unique and come from the ONNX node names (they key layers in policy files);
//   - value names are unique; `input` is the only graph input, `output` the logits;
//   - nodes are topologically sorted;
//   - ops that ONNX has but that do not change values (Identity, Dropout, Softmax at the end) are
//     removed at import; Reshape to 2-D becomes flatten; MatMul+Add becomes fully_connected.
#include "evaluator/ir/tensor.h"

#include <array>
#include <map>
#include <string>
#include <vector>

namespace mps {

enum class Op {
    conv,                // weight OIHW, optional bias [O]; kernel/stride/pads/dilation/groups
    fully_connected,     // y = x * weight^T + bias; weight [out, in], bias [out]; input is 2-D
    batch_norm,          // weight = gamma, bias = beta, mean, var, epsilon (inference semantics)
    relu,
    clip,                // clamp(x, clip_min, clip_max); ReLU6 is clip(0, 6)
    max_pool,            // kernel/stride/pads
    average_pool,        // kernel/stride/pads, count_include_pad
    global_average_pool, // NCHW -> NC11
    add,                 // elementwise sum of two values of the same shape
    flatten,             // NCHW -> N(C*H*W)
    concat,              // two or more CxHxW values joined along channels (equal H and W)
    sigmoid,             // 1 / (1 + exp(-x))
    hard_sigmoid,        // clamp(alpha * x + beta, 0, 1)
    hard_swish,          // x * clamp(x / 6 + 1 / 2, 0, 1) (ONNX HardSwish)
    mul,                 // elementwise product: same shapes, or a [C, 1, 1] scale times [C, H, W]
    channel_affine,      // y = weight[c] * x + bias[c]: a batch_norm no conv can absorb
    channel_shuffle,     // ShuffleNet's shuffle in `groups` groups: output channel k * groups + g
                         // is input channel g * (C / groups) + k
    channel_slice,       // input channels [channel_begin, channel_end)
};

const char* op_name(Op op);

// Whether `op` reads `count` input values: two for add and mul, at least two for concat, one for
// every other op. The engines, the reference and the trainer all check inputs with it.
bool accepts_inputs(Op op, size_t count);
// The input count accepts_inputs() wants, as words for messages ("1", "2", "2 or more").
const char* expected_inputs_text(Op op);

using Dims2 = std::array<int64_t, 2>;

struct Node {
    std::string name;
    Op op = Op::relu;
    std::vector<std::string> inputs; // value names: see accepts_inputs()
    std::string output;              // value name

    // conv, max_pool, average_pool
    Dims2 kernel{1, 1};
    Dims2 stride{1, 1};
    Dims2 pad_begin{0, 0}; // top, left
    Dims2 pad_end{0, 0};   // bottom, right
    Dims2 dilation{1, 1};  // conv only; 1 = dense
    int64_t groups = 1;    // conv, channel_shuffle
    bool count_include_pad = false; // average_pool

    // clip
    float clip_min = 0.0f;
    float clip_max = 6.0f;

    // batch_norm
    float epsilon = 1e-5f;

    // channel_slice
    int64_t channel_begin = 0;
    int64_t channel_end = 0;

    // hard_sigmoid: ONNX defaults (PyTorch exports alpha = 1/6)
    float alpha = 0.2f;
    float beta = 0.5f;

    // parameters (empty when the op has none; conv bias may be empty)
    Tensor weight; // conv OIHW, fully_connected [out, in], batch_norm gamma [C], channel_affine [C]
    Tensor bias;   // [out], beta [C], channel_affine [C]
    Tensor mean;   // batch_norm running mean [C]
    Tensor var;    // batch_norm running variance [C]
};

struct Graph {
    std::string input;              // graph input value name
    std::vector<int64_t> input_shape; // per image, e.g. {1, 28, 28}
    std::string output;             // logits value name
    std::vector<Node> nodes;        // topological order

    // Per-image shape of every value, filled by infer_shapes().
    std::map<std::string, std::vector<int64_t>> shapes;

    const Node* find_node(const std::string& name) const;
    // The node producing `value`, or nullptr for the graph input.
    const Node* producer(const std::string& value) const;
    // Number of nodes reading `value`.
    int consumers(const std::string& value) const;
};

// The per-image shape of `node`'s output given its inputs' shapes (as many as the node reads);
// throws mps::Error naming the node on a mismatch. infer_shapes() applies it node by node; the
// ONNX importer uses it to reject a node as soon as it reads it.
std::vector<int64_t> output_shape(const Node& node, const std::vector<std::vector<int64_t>>& in);

// Computes `shapes` for every value and checks parameter shapes against them. Throws mps::Error
// naming the node and the mismatch (e.g. a conv whose weight expects 3 input channels fed 1).
void infer_shapes(Graph& graph);

// The graph restricted to the nodes `value` depends on, with `value` as its output (shapes
// inferred): what computes one intermediate value, e.g. a layer's float32 input.
Graph truncated_at(const Graph& graph, const std::string& value);

// Folds every batch_norm that directly follows a conv (whose output feeds only that batch_norm)
// into the conv, in float32, as docs/semantics.md, "Graph preparation", defines:
//   f = gamma / sqrt(var + eps); w' = w * f; b' = (b - mean) * f + beta.
// The folded conv keeps its name and takes over the batch_norm's output value. A batch_norm that
// follows anything else (DenseNet's BN after a concat) becomes a channel_affine of the same name
// with the same factors: weight = f, bias = -mean * f + beta. Re-runs infer_shapes().
void fold_batch_norm(Graph& graph);

// Conv and fully connected layers: the layers a bit-width policy assigns bits to. Every other op,
// including concat, mul, the sigmoid family and the channel ops, runs on float32 values in every
// engine.
bool is_quantizable(const Node& node);

// Multiply-accumulates per image of one conv / fully connected node (0 for other ops: the
// elementwise mul and the activations are not counted, like add and pooling).
// Requires infer_shapes().
int64_t node_macs(const Graph& graph, const Node& node);
int64_t graph_macs(const Graph& graph);
// Parameters (weights and biases of conv and fully_connected; BN counted only if present).
int64_t graph_params(const Graph& graph);

} // namespace mps
