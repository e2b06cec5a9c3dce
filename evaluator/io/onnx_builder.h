#pragma once
// OnnxBuilder: appends nodes and initializers to an onnx::GraphProto under names that never clash.
// The quantized exporter (onnx_export_quantized.h) builds its QDQ graph with it; it only knows ONNX's
// protobuf, nothing of mpsearch's IR.
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <set>
#include <string>
#include <vector>

namespace mps {

class OnnxBuilder {
public:
    explicit OnnxBuilder(onnx::GraphProto* graph) : graph_(graph) {}

    // `base`, or `base_1`, `base_2`, ... the first not used yet; marks it used.
    std::string unique(const std::string& base);
    // Marks names (graph input and output) as taken.
    void reserve(const std::string& name) { used_.insert(name); }

    // Raw initializers; each returns its (unique) name. Dims empty = scalar.
    std::string add_float(const std::string& base, const std::vector<int64_t>& dims,
                          const std::vector<float>& values);
    std::string add_int8(const std::string& base, const std::vector<int64_t>& dims,
                         const std::vector<int8_t>& values);
    std::string add_uint8(const std::string& base, const std::vector<int64_t>& dims,
                           const std::vector<uint8_t>& values);
    std::string add_int32(const std::string& base, const std::vector<int64_t>& dims,
                          const std::vector<int32_t>& values);
    std::string add_int64(const std::string& base, const std::vector<int64_t>& dims,
                          const std::vector<int64_t>& values);
    // Opset 21's 4-bit types: two codes a byte, the first in the low nibble (ONNX's packing).
    std::string add_int4(const std::string& base, const std::vector<int64_t>& dims,
                         const std::vector<int8_t>& values, bool is_signed);

    // A node named `name` (made unique) reading `inputs`, writing one new value named after
    // `output_base`; returns the node so attributes can be set. Its output is node->output(0).
    onnx::NodeProto* add_node(const std::string& op_type, const std::string& name,
                              const std::vector<std::string>& inputs,
                              const std::string& output_base);
    // The same writing an existing, already reserved value name (the graph output).
    onnx::NodeProto* add_node_to(const std::string& op_type, const std::string& name,
                                 const std::vector<std::string>& inputs, const std::string& output);

    static void set_int(onnx::NodeProto* node, const std::string& name, int64_t value);
    static void set_ints(onnx::NodeProto* node, const std::string& name,
                         const std::vector<int64_t>& values);
    static void set_float(onnx::NodeProto* node, const std::string& name, float value);
    // A float32 graph input or output [batch, per_image...] with a symbolic batch.
    static void set_value_info(onnx::ValueInfoProto* info, const std::string& name,
                               const std::vector<int64_t>& per_image);

private:
    onnx::TensorProto* add_raw(const std::string& base, int32_t type,
                               const std::vector<int64_t>& dims, const void* data, size_t bytes);

    onnx::GraphProto* graph_;
    std::set<std::string> used_;
    std::set<std::string> node_names_;
};

} // namespace mps
