// QuantizedNetwork: the fake-quant, integer and reference execution paths (contract in the
// header).
//
// Shape of the implementation:
//   - Stages (fixed per graph, graph_builder.h's fuse_stages with sums): one per node, a ReLU /
//     Clip that is the sole reader of a conv, fully connected or add output fused into it as an
//     eltwise post-op, and an add that is a conv's sole reader (a residual) fused into the conv
//     as a binary post-op that reads the other operand (or, where the conv's kernel cannot take
//     it, run as the conv variant's own binary step). Every stage writes its own float32 buffer
//     and nothing is computed in place, so all values before a cut are still intact after run()
//     (capture() copies them) and a resume reproduces run() bit for bit. Non-layer nodes (pooling, add, mul, concat,
//     the activations) are graph_builder.h's and run on float32 on every path: code chains
//     (code_chains.h) pass through max pools and flattens only, so no codes cross them.
//   - Plans (per batch size): the oneDNN primitives and buffers. A quantizable layer has two
//     oneDNN variants, built on first use: `float` (f32 conv on quantize-dequantized weights,
//     reading the fake-quantized input) and `integer` (int8 conv reading the input's codes, f32
//     output), and the plain reference loops as the last form. All write the same f32 output
//     buffer, so a policy may switch any layer between them.
//   - The integer primitive takes everything that depends on the candidate at run time: the
//     per-kernel factor s_x * s_w[k] and the bias as binary post-ops (oneDNN 2.6 has no runtime
//     output scales for convolutions), the source zero point where int8_isa.h shifts signed
//     codes, then the layer's ReLU / Clip. One primitive per shape serves every policy.
//   - Layouts: the fake path keeps activations in nChw16c (nChw8c below AVX-512: the fast f32
//     kernels, as in inference.cpp); the integer path in nhwc, the only layout of the VNNI int8
//     kernels (jit_int8, brgconv), so that quantizing an input to codes is an elementwise pass.
//   - Weights: reordered into each primitive's layout once per (layer, bit vector), cached per
//     instance (a few bit vectors per layer); float weights come from the shared WeightCache,
//     integer codes from uniform_codes.
#include "evaluator/engine/quantized_network.h"

#include "evaluator/base/error.h"
#include "evaluator/base/lru_cache.h"
#include "evaluator/engine/code_chains.h"
#include "evaluator/engine/graph_builder.h"
#include "evaluator/engine/int8_isa.h"
#include "evaluator/engine/onednn_util.h"
#include "evaluator/engine/qnet_kernels.h"
#include "evaluator/ref/reference.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <functional>
#include <iterator>
#include <optional>
#include <set>
#include <span>
#include <unordered_map>

namespace mps {

namespace {

using dnnl::memory;
using tag = memory::format_tag;
using dt = memory::data_type;
using namespace onednn;

constexpr size_t max_weight_entries = 8; // reordered bit vectors kept per layer

std::string where(const Node& node) {
    return "quantized network: node '" + node.name + "' (" + op_name(node.op) + ")";
}

// `desc` with its element type replaced: same dimensions and element offsets.
memory::desc retyped(const memory::desc& desc, dt type) {
    dnnl_memory_desc_t raw = desc.data;
    raw.data_type = memory::convert_to_c(type);
    return memory::desc(raw);
}

// A quantizable layer, fixed per graph.
struct Layer {
    const Node* node = nullptr;
    int stage = 0;
    std::string input;
    bool input_signed = true;
    // Integer form below avx512_core_vnni (int8_isa.h): a signed input goes in as u8 codes
    // shifted by a zero point, taken back out by oneDNN (conv) or a compensation post-op (fc).
    bool shifted_source = false;
    int64_t kernels = 0;
    int64_t kernel_size = 0; // weights per kernel
    Tensor bias;              // [kernels], zeros when the node has none
    int chain_out = -1;       // the code chain this layer starts (code_chains.h), if any...
    int chain_in = -1;        // ...and the one ending at its input
};

// The element type of a layer's input codes: s8 for signed codes the CPU takes as they are, u8
// for unsigned and for shifted signed ones.
dt code_type(const Layer& layer) {
    return layer.input_signed && !layer.shifted_source ? dt::s8 : dt::u8;
}

// The three oneDNN forms of a quantizable layer: float32 on quantize-dequantized values, integer
// on codes with a float32 output, and integer writing the next layer's codes (a chain's producer).
enum class Form { float32, integer, emit };

// How a shifted source's zero point comes back out (int8_isa.h): a conv passes it to oneDNN as
// its run-time source zero point; an inner product (no zero points in oneDNN 2.6) adds
// -z * sum(w) as binary post-op 0, before the factors.
bool takes_source_zero_point(const Layer& layer) {
    return layer.shifted_source && layer.node->op == Op::conv;
}
bool compensates_zero_point(const Layer& layer) {
    return layer.shifted_source && layer.node->op == Op::fully_connected;
}

// Index of the integer variant's factor post-op: after the compensation, when there is one.
int integer_post_op(const Layer& layer) { return compensates_zero_point(layer) ? 1 : 0; }

// What the current policy asks of one layer.
struct LayerState {
    int activation_bits = float_bits;
    std::vector<int> weight_bits;
    bool integer = false;   // the integer variant, else float...
    bool reference = false; // ...unless the plain reference loops run it
    std::string decision;
    float range = 0.0f;                           // calibrated input range at activation_bits
    std::shared_ptr<const Tensor> float_weights;  // quantize-dequantized (float variant)
    std::vector<float> factors;                   // s_x * s_w[k] (integer variant)
    int32_t zero_point = 0;                       // of the shifted source codes
    std::vector<float> compensation;              // -zero_point * sum of kernel k's codes (fc)
    bool emits = false; // starts its code chain when both ends' primitives build
    // The consumer's quantizer as the emit form's post-ops apply it: y / s, clamped to
    // [qmin, qmax], plus the zero point of shifted codes.
    std::array<float, 4> emit_scalars{}; // s, qmin, qmax, zero point
};

// A layer's weights reordered for one primitive layout at one bit vector.
// Layer weights laid out for one variant: per-kernel bits, integer or float, oneDNN layout.
struct WeightKey {
    std::vector<int> bits;
    bool integer = false;
    memory::desc desc;
    bool operator==(const WeightKey&) const = default;
};

struct WeightKeyHash { // the layout is left to operator== (a layer uses one or two)
    size_t operator()(const WeightKey& key) const noexcept {
        size_t h = key.integer ? 1 : 2;
        for (int b : key.bits) h = h * 1099511628211ULL ^ static_cast<size_t>(b + 1);
        return h;
    }
};

// The primitive descriptor of a conv or an inner product (empty when oneDNN has none).
struct LayerPd {
    dnnl::convolution_forward::primitive_desc conv;
    dnnl::inner_product_forward::primitive_desc ip;
    explicit operator bool() const { return bool(conv) || bool(ip); }
    const dnnl::primitive_desc_base& base() const {
        return conv ? static_cast<const dnnl::primitive_desc_base&>(conv) : ip;
    }
    dnnl::primitive make() const {
        return conv ? dnnl::primitive(dnnl::convolution_forward(conv))
                    : dnnl::primitive(dnnl::inner_product_forward(ip));
    }
};

// One way of running a quantizable layer for one batch size.
struct Variant {
    bool built = false;
    dnnl::primitive primitive;
    memory::desc weights_desc;
    memory staged;                 // the quantized input in the value's layout (fake: f32, int: codes)
    std::optional<Step> src_copy;  // staged -> primitive's src layout, when they differ
    memory src;                    // what the primitive reads when src_copy is set
    memory dst;                    // what the primitive writes
    std::optional<Step> dst_copy;  // dst -> the value's buffer, when they differ
    // The stage's residual add: the primitive's post-op with this index (reading the operand),
    // or, when the kernel could not take it (-1), its own step from dst to the value's buffer.
    int residual_post_op = -1;
    std::optional<Step> residual;
    std::string impl;              // oneDNN's implementation name
    std::string declined;          // why oneDNN could not build it: the layer takes the next form
};

struct Plan : PlanMemory {
    memory output; // row-major [n, classes] view
    std::vector<std::vector<Step>> steps; // per stage (empty for quantizable layers)
    std::vector<Step> final_steps;        // lay the logits out row-major
    std::vector<Variant> float_variant, integer_variant, emit_variant; // per layer
    memory scratchpad; // shared by the layer primitives (they run one at a time)
    // Code chains (integer path): their 8-bit buffers and the chain stages' steps on them, each
    // layer's input codes (a chain's last buffer, or the layer's own for the quantize pass), and
    // per chain whether its buffers line up with the consumer's (else it is never used).
    PlanMemory codes;
    std::vector<std::vector<Step>> code_steps; // per stage
    std::vector<memory> input_codes;           // per layer
    std::vector<bool> chain_ready;             // per chain
    // The inputs quantized so far in this run, for a later layer reading the same value at the
    // same bits (a resnet block's conv and projection): value, bits, codes or fake-quantized.
    struct Quantized {
        std::string value;
        int bits = 0;
        bool codes = false;
        memory buffer;
    };
    std::vector<Quantized> quantized;
    Variant& variant(int l, Form form) {
        auto& all = form == Form::float32 ? float_variant
                    : form == Form::integer ? integer_variant
                                            : emit_variant;
        return all[static_cast<size_t>(l)];
    }
};

} // namespace

struct QuantizedNetwork::Impl {
    Graph graph;
    std::shared_ptr<const Calibration> calibration;
    std::shared_ptr<WeightCache> weights;
    ExecutionPath path;
    int64_t batch = 0;
    int64_t classes = 0;
    int64_t image_floats = 0;
    tag activation_tag; // layout of 4-D activations written by convs
    bool uniform_quantizer = false;
    Int8Isa isa = int8_isa();

    dnnl::engine engine{dnnl::engine::kind::cpu, 0};
    dnnl::stream stream{engine};
    std::vector<Stage> stages;
    std::vector<Layer> layers;
    Readers readers;                                 // value -> node indices
    std::optional<NodeBuilder> nodes;                // the non-layer nodes' primitives
    std::map<std::string, int> node_stage;           // node name -> stage index
    std::vector<std::vector<std::string>> live;      // per layer: values live at its cut
    std::map<std::string, memory> constants;
    std::vector<CodeChain> chains;
    std::vector<int> stage_chain;   // per stage: the chain whose pool / flatten it is, or -1
    std::vector<bool> chain_active; // per chain: its codes are what this run computes
    bool fuse_layers = true; // requantization into producers, residual adds into integer convs

    bool has_policy = false;
    std::vector<LayerState> state;
    std::vector<LruCache<WeightKey, memory, WeightKeyHash>> weight_cache; // per layer
    PlansBySize<Plan> plans;
    std::vector<float> logits;
    int64_t last_n = 0;

    const memory* active_codes(Plan& plan, const std::string& value) const;
    bool restore_codes(Plan& plan, const ActivationCut& cut, const std::string& value);

    Impl(const Graph& folded, std::shared_ptr<const Calibration> calib,
         std::shared_ptr<WeightCache> cache, ExecutionPath p, int64_t batch_size);
    void plan_stages();
    void find_live_values();
    void find_chains();
    void install(const BitPolicy& policy);
    void plan_chains();
    std::string integer_refusal(const Layer& layer, const LayerBits& bits) const;
    void set_integer_factors(const Layer& layer, LayerState& s) const;

    Plan& plan_for(int64_t n) {
        return plans.at(n, [this](int64_t size) { return build_plan(size); });
    }
    std::unique_ptr<Plan> build_plan(int64_t n);
    void build_code_buffers(Plan& plan);
    void build_variant(Plan& plan, int l, Form form);
    LayerPd layer_primitive_desc(int l, Form form, const memory::desc& src,
                                 const memory::desc& dst, const memory::desc* residual);
    LayerPd choose_layer_pd(int l, Form form, const memory::desc& have, const memory::desc& out,
                            const memory::desc* residual, std::string& declined);
    Step residual_step(const Plan& plan, int l, const memory& sum, const memory& out);
    memory weights_memory(int l, bool integer, const memory::desc& want);
    memory constant(const std::string& key, const Tensor& t, const memory::dims& dims);

    void run_stages(Plan& plan, size_t first_stage);
    const std::string& declined(Plan& plan, int l, Form form);
    void settle_form(Plan& plan, int l);
    bool starts_chain(Plan& plan, int l);
    void run_layer(Plan& plan, int l);
    void run_reference_layer(Plan& plan, int l);
    Tensor plain_copy(memory value);
    void run_onednn_layer(Plan& plan, int l, Form form);
    memory quantized_input(Plan& plan, int l, Form form);
    std::unordered_map<int, memory> integer_args(int l, Form form, const Variant& v);
    const float* finish(Plan& plan, int64_t n);
    std::vector<std::string> decisions();
};

QuantizedNetwork::Impl::Impl(const Graph& folded, std::shared_ptr<const Calibration> calib,
                             std::shared_ptr<WeightCache> cache, ExecutionPath p,
                             int64_t batch_size)
    : calibration(std::move(calib)), weights(std::move(cache)), path(p), batch(batch_size) {
    if (batch < 1)
        throw Error("quantized network: batch size must be at least 1, got " +
                    std::to_string(batch));
    if (!calibration) throw Error("quantized network: no calibration given");
    if (!weights) throw Error("quantized network: no weight cache given");
    graph = folded;
    infer_shapes(graph);
    for (const Node& node : graph.nodes)
        if (node.op == Op::batch_norm)
            throw Error(where(node) + ": the quantized network runs BN-folded graphs; call "
                                      "fold_batch_norm() first");
    activation_tag = path == ExecutionPath::integer ? tag::acdb : blocked_activation_tag();
    uniform_quantizer = weights->quantizer().has_integer_form();
    readers = readers_of(graph);
    nodes.emplace(graph, readers, engine);
    classes = Tensor::count(graph.shapes.at(graph.output));
    image_floats = Tensor::count(graph.input_shape);
    plan_stages();
    find_chains();
    find_live_values();
    state.resize(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) weight_cache.emplace_back(max_weight_entries);
    logits.assign(static_cast<size_t>(batch * classes), 0.0f);
    plan_for(batch); // non-quantizable primitives now; layer variants on first use
}

// The fused stages (residual adds in the conv before them, as binary post-ops that leave every
// value intact for the cuts) and the quantizable layers among them.
void QuantizedNetwork::Impl::plan_stages() {
    stages = fuse_stages(graph, readers, true);
    for (size_t s = 0; s < stages.size(); ++s) {
        Stage& stage = stages[s];
        const Node& node = *stage.node;
        node_stage[node.name] = static_cast<int>(s);
        if (stage.eltwise) node_stage[stage.eltwise->name] = static_cast<int>(s);
        if (stage.sum_add) node_stage[stage.sum_add->name] = static_cast<int>(s);
        if (!is_quantizable(node)) continue;
        Layer layer;
        layer.node = &node;
        layer.stage = static_cast<int>(s);
        layer.input = node.inputs.at(0);
        auto u = calibration->is_unsigned.find(layer.input);
        if (u == calibration->is_unsigned.end())
            throw Error(where(node) + ": the calibration knows nothing of its input '" +
                        layer.input + "'; calibrate this same (BN-folded) graph");
        layer.input_signed = !u->second;
        layer.shifted_source = layer.input_signed && !isa.exact_s8_source;
        layer.kernels = node.weight.dims.at(0);
        layer.kernel_size = node.weight.numel() / layer.kernels;
        layer.bias = node.bias.empty() ? Tensor({layer.kernels}) : node.bias;
        stage.layer = static_cast<int>(layers.size());
        layers.push_back(std::move(layer));
    }
}

// The code chains (integer path only) and which stages and layers they take.
void QuantizedNetwork::Impl::find_chains() {
    stage_chain.assign(stages.size(), -1);
    if (path != ExecutionPath::integer) return;
    chains = find_code_chains(graph, stages, readers);
    chain_active.assign(chains.size(), false);
    for (size_t c = 0; c < chains.size(); ++c) {
        layers[static_cast<size_t>(chains[c].producer)].chain_out = static_cast<int>(c);
        layers[static_cast<size_t>(chains[c].consumer)].chain_in = static_cast<int>(c);
        for (int stage : chains[c].stages) stage_chain[static_cast<size_t>(stage)] = static_cast<int>(c);
    }
}

// The values live at each layer's cut: produced before its stage (or the graph input) and read
// by its stage or a later one.
void QuantizedNetwork::Impl::find_live_values() {
    std::map<std::string, int> produced_at; // value -> stage index
    for (const Node& node : graph.nodes) produced_at[node.output] = node_stage.at(node.name);
    produced_at[graph.input] = -1;
    for (const Layer& layer : layers) {
        std::set<std::string> values;
        for (const Node& node : graph.nodes) {
            if (node_stage.at(node.name) < layer.stage) continue;
            for (const std::string& in : node.inputs)
                if (produced_at.at(in) < layer.stage) values.insert(in);
        }
        if (produced_at.at(graph.output) < layer.stage) values.insert(graph.output);
        live.emplace_back(values.begin(), values.end());
    }
}

// Why layer `layer` cannot run on the integer path at `bits`, or "" when it can.
std::string QuantizedNetwork::Impl::integer_refusal(const Layer& layer,
                                                    const LayerBits& bits) const {
    if (!uniform_quantizer)
        return "weight quantizer '" + weights->quantizer().name() + "' has no integer form";
    const int widest = *std::max_element(bits.weight_bits.begin(), bits.weight_bits.end());
    if (widest > 8) return std::to_string(widest) + "-bit weights";
    if (bits.activation_bits > 8) return std::to_string(bits.activation_bits) + "-bit input";
    if (isa.exact_pair_sums) return "";
    const int source =
        largest_source_code(bits.activation_bits, layer.input_signed, layer.shifted_source);
    if (pair_sums_fit_int16(source, largest_weight_code(widest))) return "";
    return std::to_string(widest) + "-bit weights x " + std::to_string(bits.activation_bits) +
           "-bit input could saturate the int16 pair sums of " + isa.name +
           "'s int8 kernels (no VNNI)";
}

// The integer variant's run-time factors: s_x * s_w[k] per kernel, the source zero point and,
// for a shifted inner product, -z * (sum of kernel k's codes).
void QuantizedNetwork::Impl::set_integer_factors(const Layer& layer, LayerState& s) const {
    const float sx = activation_scale(s.range, s.activation_bits, layer.input_signed);
    s.zero_point = layer.shifted_source ? signed_activation_zero_point(s.activation_bits) : 0;
    const bool compensate = compensates_zero_point(layer);
    s.factors.resize(static_cast<size_t>(layer.kernels));
    s.compensation.assign(compensate ? static_cast<size_t>(layer.kernels) : 0, 0.0f);
    const std::span<const float> all(layer.node->weight.data);
    for (int64_t k = 0; k < layer.kernels; ++k) {
        const int b = s.weight_bits[static_cast<size_t>(k)];
        if (b == 0) {
            s.factors[static_cast<size_t>(k)] = 0.0f;
            continue;
        }
        const auto kernel = all.subspan(static_cast<size_t>(k * layer.kernel_size),
                                        static_cast<size_t>(layer.kernel_size));
        const WeightQuantizer::KernelCodes q = weights->quantizer().kernel_codes(kernel, b);
        s.factors[static_cast<size_t>(k)] = sx * q.scale;
        if (!compensate) continue;
        int64_t sum = 0;
        for (int32_t c : q.codes) sum += c;
        s.compensation[static_cast<size_t>(k)] = static_cast<float>(-s.zero_point * sum);
    }
}

// Validated policy -> per-layer state: the path decision, the calibrated range and the weights.
void QuantizedNetwork::Impl::install(const BitPolicy& policy) {
    policy.validate(graph);
    for (size_t l = 0; l < layers.size(); ++l) {
        const Layer& layer = layers[l];
        const LayerBits& bits = policy.layers[l];
        LayerState s;
        s.activation_bits = bits.activation_bits;
        s.weight_bits = bits.weight_bits;
        s.range = calibration->range(layer.input, bits.activation_bits);
        const std::string& name = layer.node->name;
        const std::string refusal =
            path == ExecutionPath::integer ? integer_refusal(layer, bits) : std::string();
        if (path == ExecutionPath::fake) {
            s.decision = name + ": fake-quant path";
        } else if (path == ExecutionPath::reference) {
            s.reference = true;
            s.decision = name + ": reference path (plain loops)";
        } else if (!refusal.empty()) {
            s.decision = name + ": " + refusal + ", float path";
        } else {
            s.integer = true;
            s.decision = name + ": integer path (" +
                         (layer.shifted_source  ? "u8 x s8, signed input shifted by a zero point"
                          : layer.input_signed ? "s8 x s8"
                                               : "u8 x s8") +
                         ")";
        }
        if (s.integer)
            set_integer_factors(layer, s);
        else
            s.float_weights = weights->get(name, s.weight_bits);
        state[l] = std::move(s);
    }
    plan_chains();
    has_policy = true;
}

// Which chains the policy lets start: both ends on the integer path, and a consumer quantizer the
// emit form can apply (not signed 1-bit, which takes the sign; not a zero step, where every code
// is 0). Their producers get the consumer's scalars.
void QuantizedNetwork::Impl::plan_chains() {
    for (const CodeChain& chain : chains) {
        LayerState& p = state[static_cast<size_t>(chain.producer)];
        const LayerState& m = state[static_cast<size_t>(chain.consumer)];
        const Layer& consumer = layers[static_cast<size_t>(chain.consumer)];
        const bool is_signed = consumer.input_signed;
        if (!fuse_layers || !p.integer || !m.integer || (is_signed && m.activation_bits == 1))
            continue;
        const float step = activation_scale(m.range, m.activation_bits, is_signed);
        if (step == 0.0f) continue;
        const float qmax = static_cast<float>(activation_qmax(m.activation_bits, is_signed));
        p.emits = true;
        p.emit_scalars = {step, is_signed ? -qmax : 0.0f, qmax, static_cast<float>(m.zero_point)};
    }
}

std::unique_ptr<Plan> QuantizedNetwork::Impl::build_plan(int64_t n) {
    auto plan = std::make_unique<Plan>();
    nodes->begin(*plan, n);
    plan->steps.resize(stages.size());
    plan->float_variant.resize(layers.size());
    plan->integer_variant.resize(layers.size());
    plan->emit_variant.resize(layers.size());
    for (size_t s = 0; s < stages.size(); ++s) {
        const Stage& stage = stages[s];
        const Node& node = *stage.node;
        std::vector<Step>& steps = plan->steps[s];
        try {
            switch (node.op) {
            case Op::conv:
            case Op::fully_connected: {
                const memory::dims dims = with_batch(n, graph.shapes.at(node.output));
                const memory::desc desc = node.op == Op::conv
                                              ? memory::desc(dims, dt::f32, activation_tag)
                                              : plain_desc(dims);
                const memory out(desc, engine);
                plan->values[node.output] = out;
                plan->values[stage.output] = out;
                break;
            }
            case Op::max_pool:
            case Op::average_pool:
            case Op::global_average_pool: nodes->build_pool(*plan, stage, steps); break;
            case Op::add:
            case Op::mul: nodes->build_binary(*plan, stage, steps); break;
            case Op::concat: nodes->build_concat(*plan, stage, steps); break;
            case Op::relu:
            case Op::clip:
            case Op::sigmoid:
            case Op::hard_sigmoid:
            case Op::hard_swish: nodes->build_eltwise(*plan, stage, steps); break;
            case Op::flatten: nodes->build_flatten(*plan, stage, steps); break;
            case Op::channel_affine:
            case Op::channel_shuffle:
            case Op::channel_slice: nodes->build_channel_op(*plan, stage, steps); break;
            case Op::batch_norm: throw Error(where(node) + ": unexpected batch_norm");
            }
        } catch (const dnnl::error& e) {
            throw Error(where(node) + ": oneDNN could not create a primitive for it (" + e.what() +
                        ")");
        }
    }
    plan->output = nodes->row_major_view(*plan, plan->final_steps, plan->values.at(graph.output));
    build_code_buffers(*plan);
    return plan;
}

// The integer path's code buffers: each chain's, with its max pools and flattens on codes, and
// every layer's input codes. A chain whose last buffer does not have the layout the consumer's
// value has (its primitives were chosen for that) is not ready and never starts.
void QuantizedNetwork::Impl::build_code_buffers(Plan& plan) {
    plan.codes.n = plan.n;
    plan.code_steps.resize(stages.size());
    plan.chain_ready.assign(chains.size(), false);
    if (path != ExecutionPath::integer) return;
    for (size_t c = 0; c < chains.size(); ++c) {
        const CodeChain& chain = chains[c];
        const Layer& consumer = layers[static_cast<size_t>(chain.consumer)];
        const dt type = code_type(consumer);
        const memory::desc first = plan.values.at(chain.values.front()).get_desc();
        plan.codes.values[chain.values.front()] = memory(retyped(first, type), engine);
        try {
            for (int s : chain.stages) {
                const Stage& stage = stages[static_cast<size_t>(s)];
                auto& steps = plan.code_steps[static_cast<size_t>(s)];
                if (stage.node->op == Op::max_pool)
                    nodes->build_pool(plan.codes, stage, steps);
                else
                    nodes->build_flatten(plan.codes, stage, steps);
            }
        } catch (const dnnl::error&) {
            continue; // no 8-bit primitive: the chain's layers exchange float32
        }
        const memory::desc want = retyped(plan.values.at(consumer.input).get_desc(), type);
        plan.chain_ready[c] = plan.codes.values.at(chain.values.back()).get_desc() == want;
    }
    plan.input_codes.resize(layers.size());
    for (size_t l = 0; l < layers.size(); ++l) {
        const Layer& layer = layers[l];
        if (layer.chain_in >= 0 && plan.chain_ready[static_cast<size_t>(layer.chain_in)])
            plan.input_codes[l] = plan.codes.values.at(layer.input);
        else
            plan.input_codes[l] = memory(
                retyped(plan.values.at(layer.input).get_desc(), code_type(layer)), engine);
    }
}

// The per-kernel dims of layer l's binary post-op arguments, and those of one scalar.
memory::dims per_kernel_dims(const Layer& layer) {
    return layer.node->op == Op::conv ? memory::dims{1, layer.kernels, 1, 1}
                                      : memory::dims{1, layer.kernels};
}
memory::dims scalar_dims(const Layer& layer) {
    return layer.node->op == Op::conv ? memory::dims{1, 1, 1, 1} : memory::dims{1, 1};
}

// The binary post-ops of the emit form after the eltwise: the consumer's quantizer y / s,
// clamped to [qmin, qmax], plus the zero point of shifted codes; the conversion to the 8-bit
// destination rounds half to even (oneDNN's, the CPU's default rounding), as quantize_to_codes
// does, so the codes are the ones the quantize pass would write from the float32 output.
void append_requantization(dnnl::post_ops& ops, const Layer& producer, bool shifted) {
    const memory::desc scalar = plain_desc(scalar_dims(producer));
    ops.append_binary(dnnl::algorithm::binary_div, scalar);
    ops.append_binary(dnnl::algorithm::binary_max, scalar);
    ops.append_binary(dnnl::algorithm::binary_min, scalar);
    if (shifted) ops.append_binary(dnnl::algorithm::binary_add, scalar);
}

// Which of oneDNN 2.6's int8 convolution implementations the integer path takes, in order:
//   - never jit_uni_int8_1x1 (AVX2, SSE4.1) on a strided 1x1 conv: with two OpenMP threads it
//     gives different results from run to run (its copy of the source to unit stride), which
//     would make scores differ between identical runs: measured on the tests' resnet_like
//     shortcut (ic 8, oc 16, stride 2, batch 7), one image of seven changed in half the runs;
//     the direct jit_uni_int8 kernel repeats exactly;
//   - the first direct jit kernel (jit_int8, jit_int8_1x1, jit_uni_int8...) before oneDNN's own
//     first choice, brgconv / brdgmm: at the evaluator's passes of 32 images the direct kernels
//     ran the zoo models' integer W4A4 10 to 28 % faster (docs/evaluator.md, "Which int8
//     kernels"), and only they take a residual add as a full-tensor binary post-op;
//   - else oneDNN's first choice that is not a reference kernel.
// All of them compute the same integer sums and the same float32 post-ops, in the same order.
dnnl::convolution_forward::primitive_desc
choose_int8_conv(const std::function<dnnl::convolution_forward::primitive_desc()>& make,
                 const Node& node) {
    const bool strided = node.stride[0] > 1 || node.stride[1] > 1;
    auto racy = [&](const std::string& impl) {
        return strided && impl.rfind("jit_uni_int8_1x1", 0) == 0;
    };
    dnnl::convolution_forward::primitive_desc pd = make();
    if (!pd) return pd; // oneDNN has none for this layout
    int fallback = -1; // oneDNN's first acceptable choice, by position
    for (int i = 0;; ++i) {
        const std::string impl = pd.impl_info_str();
        if (!racy(impl) && !is_reference_impl(pd)) {
            if (impl.rfind("jit", 0) == 0) return pd;
            if (fallback < 0) fallback = i;
        }
        if (!pd.next_impl()) break;
    }
    pd = make();
    for (int i = 0; i < fallback; ++i) pd.next_impl();
    return pd; // with no acceptable one: oneDNN's first, which the caller sees as reference
}

// The conv / inner product primitive of layer l reading `src` and writing `dst`: float32 with
// bias and the eltwise post-op, or integer with the per-kernel factors and the bias as binary
// post-ops before the eltwise (arguments integer_post_op(layer) and the one after), the emit form
// followed by the consumer's requantization. A shifted conv takes its source zero point at run
// time; a shifted inner product adds the compensation as binary post-op 0, before the factors.
// With `residual` (the layout of the stage's residual operand), the residual add is the binary
// post-op right before the eltwise (residual_post_op()); a stage with a residual add built
// without it leaves out its eltwise too, for the residual step to apply after the add.
LayerPd QuantizedNetwork::Impl::layer_primitive_desc(int l, Form form, const memory::desc& src,
                                                     const memory::desc& dst,
                                                     const memory::desc* residual) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const Node& node = *layer.node;
    const Stage& stage = stages[static_cast<size_t>(layer.stage)];
    const bool integer = form != Form::float32;
    const dt wtype = integer ? dt::s8 : dt::f32;
    const auto prop = dnnl::prop_kind::forward_inference;
    const bool has_bias = !integer && !node.bias.empty();
    const memory::desc bias_md({layer.kernels}, dt::f32, tag::a);
    dnnl::post_ops ops;
    if (integer) {
        const memory::desc per_kernel = plain_desc(per_kernel_dims(layer));
        if (integer_post_op(layer) == 1)
            ops.append_binary(dnnl::algorithm::binary_add, per_kernel);
        ops.append_binary(dnnl::algorithm::binary_mul, per_kernel);
        ops.append_binary(dnnl::algorithm::binary_add, per_kernel);
    }
    if (residual) ops.append_binary(dnnl::algorithm::binary_add, *residual);
    if (residual || !stage.sum_add) ops = eltwise_post_op(stage.eltwise, ops);
    if (form == Form::emit) {
        const Layer& consumer = layers[static_cast<size_t>(chains[static_cast<size_t>(layer.chain_out)].consumer)];
        append_requantization(ops, layer, consumer.shifted_source);
    }
    dnnl::primitive_attr attr = attr_with(ops);
    // The plan hands every layer primitive one shared scratchpad: with oneDNN's own, brgconv
    // allocated and page-faulted megabytes on every execution.
    attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
    if (integer && takes_source_zero_point(layer))
        attr.set_zero_points(DNNL_ARG_SRC, 0, {DNNL_RUNTIME_S32_VAL});
    if (node.op == Op::conv) {
        const ConvGeometry geometry = conv_geometry(node);
        const memory::desc w_any(geometry.weights, wtype, tag::any);
        const auto desc =
            conv_forward_desc(geometry, prop, src, w_any, has_bias ? &bias_md : nullptr, dst);
        auto make = [&] { return dnnl::convolution_forward::primitive_desc(desc, attr, engine, true); };
        return {integer ? choose_int8_conv(make, node) : make(), {}};
    }
    memory::dims w_dims{layer.kernels};
    const memory::dims src_dims = src.dims();
    w_dims.insert(w_dims.end(), src_dims.begin() + 1, src_dims.end());
    const memory::desc w_any(w_dims, wtype, tag::any);
    using ip = dnnl::inner_product_forward;
    const ip::desc desc = has_bias ? ip::desc(prop, src, w_any, bias_md, dst)
                                   : ip::desc(prop, src, w_any, dst);
    return {{}, ip::primitive_desc(desc, attr, engine, true)};
}

const char* form_name(Form form) {
    return form == Form::float32 ? "float" : form == Form::integer ? "integer" : "requantizing";
}

// Index of the residual add among layer l's post-ops in `form`: after the integer forms'
// compensation, factors and bias; first in the float form (its bias is the conv's own).
int residual_post_op(const Layer& layer, Form form) {
    return form == Form::float32 ? 0 : integer_post_op(layer) + 2;
}

// Layer l's primitive descriptor in `form` between these buffers, with the residual add as a
// post-op when `residual` is given. Layout choice: first the layouts the buffers already have
// (no copies), then a source layout oneDNN picks, then both; reference kernels only as the last
// resort. Empty with the reason in `declined` when oneDNN has none.
LayerPd QuantizedNetwork::Impl::choose_layer_pd(int l, Form form, const memory::desc& have,
                                                const memory::desc& out,
                                                const memory::desc* residual,
                                                std::string& declined) {
    const memory::desc src_any(have.dims(), have.data_type(), tag::any);
    const memory::desc dst_any(out.dims(), out.data_type(), tag::any);
    LayerPd pd;
    try {
        const std::pair<memory::desc, memory::desc> tries[] = {
            {have, out}, {src_any, out}, {src_any, dst_any}};
        pd = first_fast<LayerPd>(
            std::size(tries),
            [&](size_t i) {
                return layer_primitive_desc(l, form, tries[i].first, tries[i].second, residual);
            },
            [](const LayerPd& p) { return is_reference_impl(p.base()); });
    } catch (const dnnl::error& e) {
        declined = std::string("oneDNN could not create its ") + form_name(form) + " primitive (" +
                   e.what() + ")";
    }
    if (!pd && declined.empty())
        declined = std::string("oneDNN has no ") + form_name(form) + " primitive for this shape";
    return pd;
}

// The residual add of layer l's stage as its own step: `sum` (the conv's output) plus the
// operand into `out`, then the stage's eltwise.
Step QuantizedNetwork::Impl::residual_step(const Plan& plan, int l, const memory& sum,
                                           const memory& out) {
    const Stage& stage = stages[static_cast<size_t>(layers[static_cast<size_t>(l)].stage)];
    const memory& operand = plan.values.at(stage.sum_operand);
    const dnnl::binary::desc desc(dnnl::algorithm::binary_add, sum.get_desc(),
                                  operand.get_desc(), out.get_desc());
    const dnnl::binary::primitive_desc pd(desc, attr_with(eltwise_post_op(stage.eltwise)), engine);
    return {dnnl::binary(pd), {{DNNL_ARG_SRC_0, sum}, {DNNL_ARG_SRC_1, operand}, {DNNL_ARG_DST, out}}};
}

// Whether `pd`'s kernel computes a full-tensor binary post-op (the residual add) exactly as the
// separate binary primitive does. Measured on oneDNN 2.6 (every conv kernel of the zoo's and the
// tests' shapes under the default ISA and AVX2, fused against separate): the direct jit kernels
// do; the gemm-based x64:gemm:jit (grouped f32 convs under AVX2) adds the operand at the wrong
// places, and jit_uni_int8_1x1 on strided convs (never chosen, choose_int8_conv) too.
bool takes_residual(const dnnl::primitive_desc_base& pd) {
    return std::string(pd.impl_info_str()).rfind("jit", 0) == 0 && !is_reference_impl(pd);
}

// Builds layer l's primitive in `form` for this plan. The integer forms read the layer's input
// codes; the float form its own fake-quantized copy. The float and integer forms write the f32
// output value, the emit form the first buffer of the layer's chain. A residual add goes into an
// integer form's primitive when its kernel takes it exactly (takes_residual); otherwise, and in
// the float form (whose arithmetic then stays that of the separate add), it is its own step
// after the primitive, and the emit form is declined (the layer writes float32).
void QuantizedNetwork::Impl::build_variant(Plan& plan, int l, Form form) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const Node& node = *layer.node;
    const Stage& stage = stages[static_cast<size_t>(layer.stage)];
    Variant& v = plan.variant(l, form);
    const bool integer = form != Form::float32;
    const memory& out =
        form == Form::emit
            ? plan.codes.values.at(chains[static_cast<size_t>(layer.chain_out)].values.front())
            : plan.values.at(node.output);
    const memory::desc have = integer ? plan.input_codes[static_cast<size_t>(l)].get_desc()
                                      : plan.values.at(layer.input).get_desc();
    const bool offer_residual = stage.sum_add && integer && fuse_layers;
    const memory::desc operand =
        stage.sum_add ? plan.values.at(stage.sum_operand).get_desc() : memory::desc();
    LayerPd pd = choose_layer_pd(l, form, have, out.get_desc(), offer_residual ? &operand : nullptr,
                                 v.declined);
    const bool fused = offer_residual && pd && takes_residual(pd.base());
    if (stage.sum_add && !fused) {
        v.declined.clear();
        if (form == Form::emit)
            v.declined = "its residual add does not fuse into its kernel";
        else
            pd = choose_layer_pd(l, form, have, out.get_desc(), nullptr, v.declined);
    }
    v.built = true;
    if (!v.declined.empty()) return;
    const dnnl::primitive_desc_base& chosen = pd.base();
    v.weights_desc = chosen.weights_desc();
    v.staged = integer ? plan.input_codes[static_cast<size_t>(l)] : memory(have, engine);
    if (chosen.src_desc() != have) {
        v.src = memory(chosen.src_desc(), engine);
        v.src_copy = Step{dnnl::reorder(v.staged, v.src), {}}; // arguments set per run
    }
    if (stage.sum_add && !fused) {
        v.dst = memory(chosen.dst_desc(), engine);
        v.residual = residual_step(plan, l, v.dst, out);
    } else if (chosen.dst_desc() != out.get_desc()) {
        v.dst = memory(chosen.dst_desc(), engine);
        v.dst_copy = reorder_step(v.dst, out);
    } else {
        v.dst = out;
    }
    if (fused) v.residual_post_op = residual_post_op(layer, form);
    const memory::desc scratch = chosen.scratchpad_desc();
    if (!plan.scratchpad || plan.scratchpad.get_desc().get_size() < scratch.get_size())
        plan.scratchpad = memory(scratch, engine);
    v.primitive = pd.make();
    v.impl = chosen.impl_info_str();
}

// Layer l's weights at the current policy's bits, in layout `want` (cached per bit vector).
memory QuantizedNetwork::Impl::weights_memory(int l, bool integer, const memory::desc& want) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const LayerState& s = state[static_cast<size_t>(l)];
    auto& cache = weight_cache[static_cast<size_t>(l)];
    WeightKey key{s.weight_bits, integer, want};
    if (const memory* cached = cache.find(key)) return *cached;
    const Tensor& w = layer.node->weight;
    const Node& node = *layer.node;
    // conv: [O, I, KH, KW] or grouped [G, O/G, I, KH, KW]; inner product: [out, C, H, W] or
    // [out, in], both row-major [out, in] data
    const memory::dims user_dims =
        node.op == Op::conv ? conv_geometry(node).weights : want.dims();
    memory laid_out(want, engine);
    if (integer) {
        std::vector<int8_t> codes(static_cast<size_t>(w.numel()));
        const std::span<const float> all(w.data);
        for (int64_t k = 0; k < layer.kernels; ++k) {
            const int b = s.weight_bits[static_cast<size_t>(k)];
            if (b == 0) continue; // pruned: codes stay 0
            const auto kernel = all.subspan(static_cast<size_t>(k * layer.kernel_size),
                                            static_cast<size_t>(layer.kernel_size));
            const std::vector<int32_t> q = weights->quantizer().kernel_codes(kernel, b).codes;
            std::transform(q.begin(), q.end(), codes.begin() + k * layer.kernel_size,
                           [](int32_t c) { return static_cast<int8_t>(c); });
        }
        memory source(plain_desc(user_dims, dt::s8), engine, codes.data());
        dnnl::reorder(source, laid_out).execute(stream, source, laid_out);
        stream.wait();
    } else {
        memory source(plain_desc(user_dims), engine,
                      const_cast<float*>(s.float_weights->data.data()));
        dnnl::reorder(source, laid_out).execute(stream, source, laid_out);
        stream.wait();
    }
    cache.insert(std::move(key), laid_out);
    return laid_out;
}

memory QuantizedNetwork::Impl::constant(const std::string& key, const Tensor& t,
                                        const memory::dims& dims) {
    auto it = constants.find(key);
    if (it != constants.end()) return it->second;
    memory m(plain_desc(dims), engine);
    std::memcpy(m.get_data_handle(), t.data.data(), t.data.size() * sizeof(float));
    constants.emplace(key, m);
    return m;
}

// Why layer l's `form` cannot run in this plan ("" when it can), building it on first use.
const std::string& QuantizedNetwork::Impl::declined(Plan& plan, int l, Form form) {
    Variant& v = plan.variant(l, form);
    if (!v.built) build_variant(plan, l, form);
    return v.declined;
}

// Layer l's form for this plan, in order: integer, float, the plain reference; a form whose
// oneDNN primitive cannot be built passes the layer on to the next, saying why in its decision.
void QuantizedNetwork::Impl::settle_form(Plan& plan, int l) {
    LayerState& s = state[static_cast<size_t>(l)];
    const std::string& name = layers[static_cast<size_t>(l)].node->name;
    if (!s.reference && s.integer && !declined(plan, l, Form::integer).empty()) {
        s.decision = name + ": " + declined(plan, l, Form::integer) + ", float path";
        s.integer = false;
        s.emits = false;
        s.float_weights = weights->get(name, s.weight_bits);
    }
    if (!s.reference && !s.integer && !declined(plan, l, Form::float32).empty()) {
        s.decision = name + ": " + declined(plan, l, Form::float32) + ", reference path";
        s.reference = true;
    }
}

// True when layer l starts its code chain in this run: the policy lets it (plan_chains), the
// plan's buffers line up, and both ends' integer primitives build.
bool QuantizedNetwork::Impl::starts_chain(Plan& plan, int l) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const LayerState& s = state[static_cast<size_t>(l)];
    if (layer.chain_out < 0 || !s.emits || !s.integer || s.reference) return false;
    const CodeChain& chain = chains[static_cast<size_t>(layer.chain_out)];
    if (!plan.chain_ready[static_cast<size_t>(layer.chain_out)]) return false;
    settle_form(plan, chain.consumer);
    const LayerState& m = state[static_cast<size_t>(chain.consumer)];
    return m.integer && !m.reference && declined(plan, l, Form::emit).empty();
}

void QuantizedNetwork::Impl::run_layer(Plan& plan, int l) {
    settle_form(plan, l);
    const LayerState& s = state[static_cast<size_t>(l)];
    const Layer& layer = layers[static_cast<size_t>(l)];
    const bool emit = starts_chain(plan, l);
    if (layer.chain_out >= 0) chain_active[static_cast<size_t>(layer.chain_out)] = emit;
    if (s.reference)
        run_reference_layer(plan, l);
    else
        run_onednn_layer(plan, l, emit ? Form::emit : s.integer ? Form::integer : Form::float32);
}

// A value's elements in plain (row-major) order.
Tensor QuantizedNetwork::Impl::plain_copy(memory value) {
    Tensor t(value.get_desc().dims());
    memory plain(plain_desc(t.dims), engine, t.data.data());
    dnnl::reorder(value, plain).execute(stream, value, plain);
    stream.wait();
    return t;
}

// Layer l through the plain loops of evaluator/ref/ on its fake-quantized input and
// quantize-dequantized weights (double accumulation), then its fused ReLU / Clip.
void QuantizedNetwork::Impl::run_reference_layer(Plan& plan, int l) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const LayerState& s = state[static_cast<size_t>(l)];
    const Stage& stage = stages[static_cast<size_t>(layer.stage)];
    Tensor x = plain_copy(plan.values.at(layer.input));
    const memory::dims dims = x.dims;
    if (s.activation_bits != float_bits)
        fake_quantize_activation(x.data.data(), x.numel(), s.range, s.activation_bits,
                                 layer.input_signed);
    Node node = *layer.node;
    node.weight = *s.float_weights;
    if (node.op == Op::fully_connected) x.dims = {dims[0], x.numel() / dims[0]};
    Tensor y = node.op == Op::conv ? reference_conv(x, node) : reference_fully_connected(x, node);
    if (stage.sum_add) {
        const Tensor operand = plain_copy(plan.values.at(stage.sum_operand));
        for (size_t i = 0; i < y.data.size(); ++i) y.data[i] += operand.data[i];
    }
    if (stage.eltwise)
        y = stage.eltwise->op == Op::relu ? reference_relu(y) : reference_clip(y, *stage.eltwise);
    memory out = plan.values.at(node.output);
    memory plain_y(plain_desc(out.get_desc().dims()), engine, y.data.data());
    dnnl::reorder(plain_y, out).execute(stream, plain_y, out);
    stream.wait();
}

// Layer l's oneDNN form (built): quantize the input (unless a chain wrote its codes), run the
// conv / inner product.
// Layer l's input as `form` reads it: the value itself (float form at 32 bits), the codes a
// chain wrote, or the layer's quantized copy, unless a layer before it in this run quantized the
// same value at the same bits into a buffer of the same layout: then that one (the same codes).
memory QuantizedNetwork::Impl::quantized_input(Plan& plan, int l, Form form) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    const LayerState& s = state[static_cast<size_t>(l)];
    Variant& v = plan.variant(l, form);
    const memory& value = plan.values.at(layer.input);
    const bool codes = form != Form::float32;
    if (!codes && s.activation_bits == float_bits) return value;
    if (codes && layer.chain_in >= 0 && chain_active[static_cast<size_t>(layer.chain_in)])
        return v.staged; // the producer wrote them
    for (const Plan::Quantized& q : plan.quantized)
        if (q.value == layer.input && q.bits == s.activation_bits && q.codes == codes &&
            q.buffer.get_desc() == v.staged.get_desc())
            return q.buffer;
    const int64_t elements = static_cast<int64_t>(value.get_desc().get_size() / sizeof(float));
    const float* x = static_cast<const float*>(value.get_data_handle());
    if (!codes)
        qnet::fake_quantize_into(x, static_cast<float*>(v.staged.get_data_handle()), elements,
                                 s.range, s.activation_bits, layer.input_signed);
    else if (layer.shifted_source)
        qnet::quantize_to_shifted_codes(x, static_cast<uint8_t*>(v.staged.get_data_handle()),
                                        elements, s.range, s.activation_bits);
    else
        qnet::quantize_to_codes(x, v.staged.get_data_handle(), elements, s.range,
                                s.activation_bits, layer.input_signed);
    plan.quantized.push_back({layer.input, s.activation_bits, codes, v.staged});
    return v.staged;
}

void QuantizedNetwork::Impl::run_onednn_layer(Plan& plan, int l, Form form) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    Variant& v = plan.variant(l, form);
    memory src = quantized_input(plan, l, form);
    if (v.src_copy) {
        v.src_copy->primitive.execute(stream, {{DNNL_ARG_FROM, src}, {DNNL_ARG_TO, v.src}});
        src = v.src;
    }
    std::unordered_map<int, memory> args =
        form == Form::float32 ? std::unordered_map<int, memory>{} : integer_args(l, form, v);
    if (v.residual_post_op >= 0)
        args[DNNL_ARG_ATTR_MULTIPLE_POST_OP(v.residual_post_op) | DNNL_ARG_SRC_1] =
            plan.values.at(stages[static_cast<size_t>(layer.stage)].sum_operand);
    args[DNNL_ARG_SRC] = src;
    args[DNNL_ARG_WEIGHTS] = weights_memory(l, form != Form::float32, v.weights_desc);
    args[DNNL_ARG_DST] = v.dst;
    args[DNNL_ARG_SCRATCHPAD] = plan.scratchpad;
    if (form == Form::float32 && !layer.node->bias.empty())
        args[DNNL_ARG_BIAS] = constant(layer.node->name + "/bias", layer.node->bias, {layer.kernels});
    v.primitive.execute(stream, args);
    if (v.dst_copy) v.dst_copy->execute(stream);
    if (v.residual) v.residual->execute(stream);
}

// The run-time arguments of layer l's integer forms: the compensation (shifted inner product),
// the factors and the bias, the source zero point (shifted conv) and the emit form's scalars.
std::unordered_map<int, memory> QuantizedNetwork::Impl::integer_args(int l, Form form,
                                                                      const Variant& v) {
    const Layer& layer = layers[static_cast<size_t>(l)];
    LayerState& s = state[static_cast<size_t>(l)];
    const memory::desc per_kernel = plain_desc(per_kernel_dims(layer));
    auto post_op = [](int index) { return DNNL_ARG_ATTR_MULTIPLE_POST_OP(index) | DNNL_ARG_SRC_1; };
    std::unordered_map<int, memory> args;
    const int first = integer_post_op(layer);
    if (first == 1) args[post_op(0)] = memory(per_kernel, engine, s.compensation.data());
    args[post_op(first)] = memory(per_kernel, engine, s.factors.data());
    args[post_op(first + 1)] = constant(layer.node->name + "/bias_per_kernel", layer.bias,
                                        per_kernel_dims(layer));
    if (takes_source_zero_point(layer))
        args[DNNL_ARG_ATTR_ZERO_POINTS | DNNL_ARG_SRC] =
            memory({{1}, dt::s32, tag::x}, engine, &s.zero_point);
    if (form == Form::emit) {
        const int after = first + 2 + (v.residual_post_op >= 0 ? 1 : 0) +
                          (stages[static_cast<size_t>(layer.stage)].eltwise ? 1 : 0);
        const memory::desc scalar = plain_desc(scalar_dims(layer));
        const bool shifted =
            layers[static_cast<size_t>(chains[static_cast<size_t>(layer.chain_out)].consumer)]
                .shifted_source;
        for (int k = 0; k < (shifted ? 4 : 3); ++k)
            args[post_op(after + k)] = memory(scalar, engine, &s.emit_scalars[static_cast<size_t>(k)]);
    }
    return args;
}

void QuantizedNetwork::Impl::run_stages(Plan& plan, size_t first_stage) {
    plan.quantized.clear();
    for (size_t s = first_stage; s < stages.size(); ++s) {
        const int chain = stage_chain[s];
        if (stages[s].layer >= 0)
            run_layer(plan, stages[s].layer);
        else if (chain >= 0 && chain_active[static_cast<size_t>(chain)])
            for (Step& step : plan.code_steps[s]) step.execute(stream);
        else
            for (Step& step : plan.steps[s]) step.execute(stream);
    }
    for (Step& step : plan.final_steps) step.execute(stream);
    stream.wait();
}

// The code buffer holding `value` in the last run, when an active chain carried it as codes.
const memory* QuantizedNetwork::Impl::active_codes(Plan& plan, const std::string& value) const {
    for (size_t c = 0; c < chains.size(); ++c) {
        if (!chain_active[c]) continue;
        const auto& values = chains[c].values;
        if (std::find(values.begin(), values.end(), value) != values.end())
            return &plan.codes.values.at(value);
    }
    return nullptr;
}

// Restores `value` from the cut's codes and marks its chain active (true), or returns false when
// the cut holds it as float32. The cut was taken with the same bits of every layer its codes
// depend on (the caller's contract), so the chain's state then was its state now.
bool QuantizedNetwork::Impl::restore_codes(Plan& plan, const ActivationCut& cut,
                                           const std::string& value) {
    auto it = cut.codes.find(value);
    for (size_t c = 0; c < chains.size(); ++c) {
        const auto& values = chains[c].values;
        if (std::find(values.begin(), values.end(), value) == values.end()) continue;
        chain_active[c] = it != cut.codes.end();
        if (!chain_active[c]) return false;
        memory& codes = plan.codes.values.at(value);
        if (it->second.size() != codes.get_desc().get_size())
            throw Error("quantized network: the cut at layer " + std::to_string(cut.layer) +
                        " holds codes of '" + value + "' of the wrong size; take cuts with " +
                        "capture() of a network of the same model and batch");
        std::memcpy(codes.get_data_handle(), it->second.data(), it->second.size());
        return true;
    }
    if (it != cut.codes.end())
        throw Error("quantized network: the cut at layer " + std::to_string(cut.layer) +
                    " holds codes of '" + value + "', which this network keeps as float32");
    return false;
}

// Each layer's path at the full batch's plan, as run() settles it, with what its primitive
// fuses: the next layer's codes (a chain it starts) and the residual add.
std::vector<std::string> QuantizedNetwork::Impl::decisions() {
    Plan& plan = plan_for(batch);
    std::vector<std::string> lines;
    for (int l = 0; l < static_cast<int>(state.size()); ++l) {
        settle_form(plan, l);
        const Layer& layer = layers[static_cast<size_t>(l)];
        const LayerState& s = state[static_cast<size_t>(l)];
        std::string line = s.decision;
        const bool emit = starts_chain(plan, l);
        if (emit) {
            const CodeChain& chain = chains[static_cast<size_t>(layer.chain_out)];
            line += ", writes " + layers[static_cast<size_t>(chain.consumer)].node->name + "'s codes";
        }
        const Form form = emit ? Form::emit : s.integer ? Form::integer : Form::float32;
        if (!s.reference && plan.variant(l, form).residual_post_op >= 0)
            line += ", adds " + stages[static_cast<size_t>(layer.stage)].sum_add->name +
                    " in its kernel";
        lines.push_back(line);
    }
    return lines;
}

const float* QuantizedNetwork::Impl::finish(Plan& plan, int64_t n) {
    std::memcpy(logits.data(), plan.output.get_data_handle(),
                static_cast<size_t>(n * classes) * sizeof(float));
    return logits.data();
}

// --- Public API ---

QuantizedNetwork::QuantizedNetwork(const Graph& folded,
                                   std::shared_ptr<const Calibration> calibration,
                                   std::shared_ptr<WeightCache> weights, ExecutionPath path,
                                   int64_t batch)
    : impl_(std::make_unique<Impl>(folded, std::move(calibration), std::move(weights), path,
                                   batch)) {}

QuantizedNetwork::~QuantizedNetwork() = default;

void QuantizedNetwork::set_policy(const BitPolicy& policy) { impl_->install(policy); }

const float* QuantizedNetwork::run(const float* images, int64_t n) {
    Impl& im = *impl_;
    if (!im.has_policy)
        throw Error("quantized network: run() before set_policy(); install a bit policy first");
    if (n < 0 || n > im.batch)
        throw Error("quantized network: run() got " + std::to_string(n) +
                    " images; the network was built for batches of at most " +
                    std::to_string(im.batch));
    im.last_n = n;
    if (n == 0) return im.logits.data();
    if (!images)
        throw Error("quantized network: run() got no image buffer for " + std::to_string(n) +
                    " images");
    Plan& plan = im.plan_for(n);
    plan.input.set_data_handle(const_cast<float*>(images)); // only read
    im.run_stages(plan, 0);
    return im.finish(plan, n);
}

ActivationCut QuantizedNetwork::capture(int layer) const {
    const Impl& im = *impl_;
    if (layer < 0 || layer >= static_cast<int>(im.layers.size()))
        throw Error("quantized network: capture(" + std::to_string(layer) +
                    ") is out of range; the model has " + std::to_string(im.layers.size()) +
                    " quantizable layers (0-based)");
    if (im.last_n == 0)
        throw Error("quantized network: capture() needs a run() of at least one image first");
    Impl& mutable_im = *impl_; // plans and the stream are not logically part of the state
    Plan& plan = mutable_im.plan_for(im.last_n);
    ActivationCut cut;
    cut.layer = layer;
    cut.images = im.last_n;
    for (const std::string& value : im.live[static_cast<size_t>(layer)]) {
        if (const memory* codes = im.active_codes(plan, value)) {
            const auto* begin = static_cast<const uint8_t*>(codes->get_data_handle());
            cut.codes.emplace(value, std::vector<uint8_t>(begin, begin + codes->get_desc().get_size()));
            continue;
        }
        memory mem = plan.values.at(value);
        Tensor t(with_batch(im.last_n, im.graph.shapes.at(value)));
        memory plain(plain_desc(mem.get_desc().dims()), im.engine, t.data.data());
        dnnl::reorder(mem, plain).execute(mutable_im.stream, mem, plain);
        mutable_im.stream.wait();
        cut.values.emplace(value, std::move(t));
    }
    return cut;
}

const float* QuantizedNetwork::resume(const ActivationCut& cut) {
    Impl& im = *impl_;
    if (!im.has_policy)
        throw Error("quantized network: resume() before set_policy(); install a bit policy first");
    if (cut.layer < 0 || cut.layer >= static_cast<int>(im.layers.size()))
        throw Error("quantized network: resume() got a cut at layer " + std::to_string(cut.layer) +
                    ", out of range for this model's " + std::to_string(im.layers.size()) +
                    " quantizable layers");
    if (cut.images < 1 || cut.images > im.batch)
        throw Error("quantized network: resume() got a cut of " + std::to_string(cut.images) +
                    " images; the network was built for batches of 1 to " +
                    std::to_string(im.batch));
    Plan& plan = im.plan_for(cut.images);
    for (const std::string& value : im.live[static_cast<size_t>(cut.layer)]) {
        if (im.restore_codes(plan, cut, value)) continue;
        auto it = cut.values.find(value);
        const int64_t want = cut.images * Tensor::count(im.graph.shapes.at(value));
        if (it == cut.values.end() || it->second.numel() != want)
            throw Error("quantized network: the cut at layer " + std::to_string(cut.layer) +
                        " lacks value '" + value + "' (or has the wrong size); take cuts with " +
                        "capture() of a network of the same model");
        float* data = const_cast<float*>(it->second.data.data()); // only read
        if (value == im.graph.input) {
            plan.input.set_data_handle(data);
            continue;
        }
        memory mem = plan.values.at(value);
        memory plain(plain_desc(mem.get_desc().dims()), im.engine, data);
        dnnl::reorder(plain, mem).execute(im.stream, plain, mem);
    }
    im.last_n = cut.images;
    im.run_stages(plan, static_cast<size_t>(im.layers[static_cast<size_t>(cut.layer)].stage));
    return im.finish(plan, cut.images);
}

void QuantizedNetwork::set_fusion(bool on) { impl_->fuse_layers = on; }

int64_t ActivationCut::bytes() const {
    int64_t total = 0;
    for (const auto& [name, tensor] : values) total += tensor.numel() * int64_t{sizeof(float)};
    for (const auto& [name, raw] : codes) total += static_cast<int64_t>(raw.size());
    return total;
}

std::vector<std::string> QuantizedNetwork::path_decisions() { return impl_->decisions(); }

int64_t QuantizedNetwork::batch() const { return impl_->batch; }
int64_t QuantizedNetwork::num_classes() const { return impl_->classes; }

} // namespace mps
