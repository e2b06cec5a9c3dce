#pragma once
// Small oneDNN helpers shared by the engines that build primitives from the graph IR: the float
// inference engine, the quantized network and the trainer. Internal to evaluator/.
#include "evaluator/ir/graph.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cstdint>
#include <vector>

namespace mps::onednn {

using dnnl::memory;

// {n, per_image...}
memory::dims with_batch(int64_t n, const std::vector<int64_t>& per_image);
// Row-major layout of a tensor of rank 1..5 (a, ab, abc, ...); mps::Error otherwise.
memory::format_tag plain_tag(size_t ndims);
memory::desc plain_desc(const memory::dims& dims, memory::data_type type = memory::data_type::f32);

// `ops` with the relu / clip node `eltwise` appended as an eltwise post-op (unchanged if null).
dnnl::post_ops eltwise_post_op(const Node* eltwise, dnnl::post_ops ops = {});
dnnl::primitive_attr attr_with(const dnnl::post_ops& ops);

// The channel-blocked layout of 4-D float activations that oneDNN's direct f32 kernels use on
// this CPU: nChw16c with AVX-512, nChw8c below (its AVX2 kernels take 8-channel blocks). Asking
// AVX2 for nChw16c costs a reorder per conv, and oneDNN 2.6's jit reorder from nChw8c to
// nChw16c writes one byte past the destination when the channels are padded.
memory::format_tag blocked_activation_tag();

// True when oneDNN chose its slow reference implementation ("ref:..."), which the engines avoid
// by offering other layouts first.
bool is_reference_impl(const dnnl::primitive_desc_base& pd);

// Inference pooling of a max_pool, average_pool or global_average_pool node on `src`, writing a
// tensor of `dst_dims` of the source's element type in the layout oneDNN prefers.
dnnl::pooling_forward::primitive_desc pooling_inference(const Node& node, const memory::desc& src,
                                                        const memory::dims& dst_dims,
                                                        const dnnl::engine& engine);

} // namespace mps::onednn
