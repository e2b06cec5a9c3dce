#include "evaluator/io/onnx_builder.h"

namespace mps {

std::string OnnxBuilder::unique(const std::string& base) {
    std::string name = base;
    for (int k = 1; used_.count(name); ++k) name = base + "_" + std::to_string(k);
    used_.insert(name);
    return name;
}

onnx::TensorProto* OnnxBuilder::add_raw(const std::string& base, int32_t type,
                                        const std::vector<int64_t>& dims, const void* data,
                                        size_t bytes) {
    auto* proto = graph_->add_initializer();
    proto->set_name(unique(base));
    proto->set_data_type(type);
    for (int64_t d : dims) proto->add_dims(d);
    proto->set_raw_data(std::string(static_cast<const char*>(data), bytes));
    return proto;
}

std::string OnnxBuilder::add_float(const std::string& base, const std::vector<int64_t>& dims,
                                   const std::vector<float>& values) {
    return add_raw(base, onnx::TensorProto::FLOAT, dims, values.data(), values.size() * 4)->name();
}

std::string OnnxBuilder::add_int8(const std::string& base, const std::vector<int64_t>& dims,
                                  const std::vector<int8_t>& values) {
    return add_raw(base, onnx::TensorProto::INT8, dims, values.data(), values.size())->name();
}

std::string OnnxBuilder::add_uint8(const std::string& base, const std::vector<int64_t>& dims,
                                   const std::vector<uint8_t>& values) {
    return add_raw(base, onnx::TensorProto::UINT8, dims, values.data(), values.size())->name();
}

std::string OnnxBuilder::add_int32(const std::string& base, const std::vector<int64_t>& dims,
                                   const std::vector<int32_t>& values) {
    return add_raw(base, onnx::TensorProto::INT32, dims, values.data(), values.size() * 4)->name();
}

std::string OnnxBuilder::add_int64(const std::string& base, const std::vector<int64_t>& dims,
                                   const std::vector<int64_t>& values) {
    return add_raw(base, onnx::TensorProto::INT64, dims, values.data(), values.size() * 8)->name();
}

std::string OnnxBuilder::add_int4(const std::string& base, const std::vector<int64_t>& dims,
                                  const std::vector<int8_t>& values, bool is_signed) {
    std::vector<uint8_t> packed((values.size() + 1) / 2, 0);
    for (size_t i = 0; i < values.size(); ++i)
        packed[i / 2] |= static_cast<uint8_t>((values[i] & 0x0F) << (i % 2 ? 4 : 0));
    // INT4 = 22, UINT4 = 21 (onnx.proto of opset 21; Debian's libonnx predates the names)
    constexpr int32_t int4 = 22, uint4 = 21;
    return add_raw(base, is_signed ? int4 : uint4, dims,
                   packed.data(), packed.size())
        ->name();
}

onnx::NodeProto* OnnxBuilder::add_node(const std::string& op_type, const std::string& name,
                                       const std::vector<std::string>& inputs,
                                       const std::string& output_base) {
    return add_node_to(op_type, name, inputs, unique(output_base));
}

onnx::NodeProto* OnnxBuilder::add_node_to(const std::string& op_type, const std::string& name,
                                          const std::vector<std::string>& inputs,
                                          const std::string& output) {
    auto* node = graph_->add_node();
    std::string node_name = name;
    for (int k = 1; node_names_.count(node_name); ++k) node_name = name + "_" + std::to_string(k);
    node_names_.insert(node_name);
    node->set_name(node_name);
    node->set_op_type(op_type);
    for (const std::string& input : inputs) node->add_input(input);
    node->add_output(output);
    return node;
}

void OnnxBuilder::set_int(onnx::NodeProto* node, const std::string& name, int64_t value) {
    auto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INT);
    a->set_i(value);
}

void OnnxBuilder::set_ints(onnx::NodeProto* node, const std::string& name,
                           const std::vector<int64_t>& values) {
    auto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : values) a->add_ints(v);
}

void OnnxBuilder::set_float(onnx::NodeProto* node, const std::string& name, float value) {
    auto* a = node->add_attribute();
    a->set_name(name);
    a->set_type(onnx::AttributeProto::FLOAT);
    a->set_f(value);
}

void OnnxBuilder::set_value_info(onnx::ValueInfoProto* info, const std::string& name,
                                 const std::vector<int64_t>& per_image) {
    info->set_name(name);
    auto* tensor_type = info->mutable_type()->mutable_tensor_type();
    tensor_type->set_elem_type(onnx::TensorProto::FLOAT);
    auto* shape = tensor_type->mutable_shape();
    shape->add_dim()->set_dim_param("batch");
    for (int64_t d : per_image) shape->add_dim()->set_dim_value(d);
}

} // namespace mps
