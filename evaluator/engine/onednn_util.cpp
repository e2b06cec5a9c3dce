#include "evaluator/engine/onednn_util.h"

#include "evaluator/base/error.h"

#include <string>

namespace mps::onednn {

using tag = memory::format_tag;

memory::dims with_batch(int64_t n, const std::vector<int64_t>& per_image) {
    memory::dims dims{n};
    dims.insert(dims.end(), per_image.begin(), per_image.end());
    return dims;
}

tag plain_tag(size_t ndims) {
    switch (ndims) {
    case 1: return tag::a;
    case 2: return tag::ab;
    case 3: return tag::abc;
    case 4: return tag::abcd;
    case 5: return tag::abcde;
    default: throw Error("oneDNN: tensors of rank " + std::to_string(ndims) + " are unsupported");
    }
}

memory::desc plain_desc(const memory::dims& dims, memory::data_type type) {
    return memory::desc(dims, type, plain_tag(dims.size()));
}

dnnl::post_ops eltwise_post_op(const Node* eltwise, dnnl::post_ops ops) {
    if (!eltwise) return ops;
    if (eltwise->op == Op::relu)
        ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_relu, 0.0f, 0.0f);
    else
        ops.append_eltwise(1.0f, dnnl::algorithm::eltwise_clip, eltwise->clip_min,
                           eltwise->clip_max);
    return ops;
}

dnnl::primitive_attr attr_with(const dnnl::post_ops& ops) {
    dnnl::primitive_attr attr;
    attr.set_post_ops(ops);
    return attr;
}

tag blocked_activation_tag() {
    const auto isa = static_cast<unsigned>(dnnl::get_effective_cpu_isa());
    const auto avx512 = static_cast<unsigned>(dnnl::cpu_isa::avx512_core);
    return (isa & avx512) == avx512 ? tag::aBcd16b : tag::aBcd8b;
}

bool is_reference_impl(const dnnl::primitive_desc_base& pd) {
    return std::string(pd.impl_info_str()).rfind("ref", 0) == 0;
}

dnnl::pooling_forward::primitive_desc pooling_inference(const Node& node, const memory::desc& src,
                                                        const memory::dims& dst_dims,
                                                        const dnnl::engine& engine) {
    dnnl::algorithm algo = dnnl::algorithm::pooling_max;
    memory::dims kernel{node.kernel[0], node.kernel[1]}, strides{node.stride[0], node.stride[1]};
    memory::dims pad_l{node.pad_begin[0], node.pad_begin[1]},
        pad_r{node.pad_end[0], node.pad_end[1]};
    if (node.op == Op::average_pool) {
        algo = node.count_include_pad ? dnnl::algorithm::pooling_avg_include_padding
                                      : dnnl::algorithm::pooling_avg_exclude_padding;
    } else if (node.op == Op::global_average_pool) {
        algo = dnnl::algorithm::pooling_avg_exclude_padding;
        const memory::dims src_dims = src.dims();
        kernel = {src_dims[2], src_dims[3]};
        strides = {1, 1};
        pad_l = pad_r = {0, 0};
    }
    using pool = dnnl::pooling_forward;
    const pool::desc desc(dnnl::prop_kind::forward_inference, algo, src,
                          memory::desc(dst_dims, src.data_type(), tag::any), strides,
                          kernel, pad_l, pad_r);
    return pool::primitive_desc(desc, engine);
}

} // namespace mps::onednn
