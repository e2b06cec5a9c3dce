#pragma once
// Costs of a model under a bit-width policy, per image (docs/semantics.md, "Costs").
//
//   MACs_k      multiply-accumulates of kernel k: output positions x kernel size (the same for
//               every kernel of a layer); a layer's MACs is the sum over its kernels.
//   BitOPs      sum over layers and kernels of MACs_k * b_w(k) * b_a(layer); pruned kernels cost 0.
//               FP32 reference: MACs * 32 * 32.
//   weight bits sum over kernels of #weights_k * b_w(k), plus 32 bits of scale per quantized kernel
//               (1 <= b_w <= 16), plus 32 bits per bias element (a pruned kernel keeps its bias).
//               FP32 reference: every weight and bias at 32 bits, no scales. Only conv and fully
//               connected parameters count (the costed graph is BN-folded).
//   FLOPs       of the pruned network: 2 x MACs of the unpruned kernels (b_w > 0).
//               FP32 reference: 2 x MACs.
//   peak activation bits
//               Nodes run one at a time in graph order, no operation in place. A value is live from
//               the step that produces it (the graph input: from the start) through the step of
//               its last reader (the graph output: through the last step). At each step the memory
//               is the sum over live values of numel x storage bits; the peak is the maximum over
//               steps. A value is stored once, at the widest precision any reader needs: a
//               quantizable layer reading it needs its activation bits, any other reader (and the
//               graph output) needs 32. FP32 reference: the same schedule with every value at 32.
// Relative figures divide by the FP32 reference (1.0 for the W32A32 policy).
#include "evaluator/ir/bit_policy.h"
#include "evaluator/ir/graph.h"

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace mps {

struct LayerCosts {
    std::string name;
    int64_t kernels = 0;
    int64_t kernel_macs = 0;     // MACs of one kernel (every kernel of the layer has the same)
    int64_t macs = 0;            // kernels * kernel_macs
    int64_t unpruned_macs = 0;   // MACs of the kernels with b_w > 0
    int64_t bitops = 0;
    int64_t weight_bits = 0;     // weights, scales and biases
};

struct Costs {
    int64_t macs = 0;            // all kernels (policy independent)
    int64_t bitops = 0;
    int64_t fp32_bitops = 0;     // macs * 32 * 32
    int64_t weight_bits = 0;
    int64_t fp32_weight_bits = 0;
    int64_t flops = 0;           // 2 x MACs of unpruned kernels
    int64_t fp32_flops = 0;      // 2 x macs
    int64_t peak_activation_bits = 0;
    int64_t fp32_peak_activation_bits = 0;
    std::vector<LayerCosts> layers; // quantizable layers, graph order

    double weight_bytes() const { return static_cast<double>(weight_bits) / 8.0; }
    double fp32_weight_bytes() const { return static_cast<double>(fp32_weight_bits) / 8.0; }
    double peak_activation_bytes() const { return static_cast<double>(peak_activation_bits) / 8.0; }

    double relative_bitops() const { return ratio(bitops, fp32_bitops); }
    double relative_weight_bytes() const { return ratio(weight_bits, fp32_weight_bits); }
    double relative_flops() const { return ratio(flops, fp32_flops); }
    double relative_peak_activation() const {
        return ratio(peak_activation_bits, fp32_peak_activation_bits);
    }

private:
    static double ratio(int64_t a, int64_t b) {
        return b ? static_cast<double>(a) / static_cast<double>(b) : 0.0;
    }
};

// MACs of one kernel of a conv / fully_connected node per image (node_macs / kernels).
// Requires infer_shapes().
int64_t kernel_macs(const Graph& graph, const Node& node);

// What the per-kernel cost rule needs of one kernel of a conv / fully_connected node (every
// kernel of a layer has the same). Requires infer_shapes().
struct KernelShape {
    int64_t macs = 0;    // kernel_macs
    int64_t weights = 0; // weights of one kernel (0 for a node without kernels)
};
KernelShape kernel_shape(const Graph& graph, const Node& node);

// One kernel's share of the costs above at weight bits b_w, with its layer's input at
// activation bits b_a: the rule compute_costs sums, for searches that update costs kernel by
// kernel instead of recomputing the network (biases apart: they do not depend on the bits).
struct KernelCosts {
    int64_t bitops = 0;        // MACs * b_w * b_a
    int64_t weight_bits = 0;   // #weights * b_w, plus a 32-bit scale when 1 <= b_w <= 16
    int64_t unpruned_macs = 0; // MACs unless b_w = 0 (pruned); FLOPs are twice these
};
KernelCosts kernel_costs(const KernelShape& kernel, int weight_bits, int activation_bits);

// Bits of a node's bias: every element at 32 bits, pruned kernels included.
int64_t bias_bits(const Node& node);

// Costs of `graph` (shapes inferred) under `policy`; validates the policy first (mps::Error).
Costs compute_costs(const Graph& graph, const BitPolicy& policy);

// Peak activation memory in bits per image with the storage bits of every value given
// (values missing from the map count at 32 bits); the schedule is the one described above.
int64_t peak_activation_bits(const Graph& graph, const std::map<std::string, int>& value_bits);

} // namespace mps
