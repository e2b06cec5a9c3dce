#include "evaluator/io/onnx_io.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/error.h"
#include "evaluator/io/onnx_builder.h"
#include "evaluator/io/onnx_channel_ops.h"
#include "evaluator/io/onnx_shape_folding.h"

#include <onnx/onnx_pb.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <sstream>
#include <unistd.h>

namespace mps {
namespace {

static_assert(std::endian::native == std::endian::little,
              "ONNX raw_data is little-endian; a big-endian host would need byte swapping");

constexpr int64_t min_opset = 6; // Clip with attributes (opsets 6..10) is still read
constexpr int64_t max_opset = 17;
constexpr int64_t export_opset = 13;
constexpr int64_t hard_swish_opset = 14; // HardSwish first appears in opset 14
constexpr int64_t export_ir_version = 7;

constexpr const char* supported_ops =
    "Conv, Gemm, MatMul (optionally followed by Add of a 1-D constant), BatchNormalization, Relu, "
    "Clip, MaxPool, AveragePool, GlobalAveragePool, ReduceMean (over H and W), Add, "
    "Mul (equal shapes, or [N, C, 1, 1] by [N, C, H, W]), Concat (along channels), Sigmoid, "
    "HardSigmoid, HardSwish, Flatten, Reshape (to 2-D), Reshape-Transpose-Reshape (a channel "
    "shuffle), Slice and Split (along channels), Identity, Pad (by zero), Dropout, Constant, "
    "Softmax (as the last node), and shape computations on constants (Shape, Gather, Unsqueeze, "
    "Squeeze, Concat, Slice, Cast, Add, Sub, Mul, Div)";

std::string read_whole_file(const std::string& path, const std::string& what_for_errors) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw Error(what_for_errors + ": cannot open (" + std::strerror(errno) +
                    "); check the path");
    }
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

std::string join(const std::vector<int64_t>& values) {
    std::string text = "[";
    for (size_t i = 0; i < values.size(); ++i) text += (i ? ", " : "") + std::to_string(values[i]);
    return text + "]";
}

std::string data_type_name(int32_t type) {
    if (onnx::TensorProto_DataType_IsValid(type)) {
        return onnx::TensorProto_DataType_Name(static_cast<onnx::TensorProto_DataType>(type));
    }
    return "type " + std::to_string(type);
}

bool is_default_domain(const std::string& domain) { return domain.empty() || domain == "ai.onnx"; }

// ------------------------------------------------------------------------------------------------
// Import
// ------------------------------------------------------------------------------------------------

// Turns one ONNX ModelProto into a Graph. Errors carry the file name and, inside a node, the
// node's name and op type.
class Importer {
public:
    Importer(const onnx::ModelProto& model, std::string file, std::string base_dir)
        : model_(model), onnx_(model.graph()), file_(std::move(file)),
          base_dir_(std::move(base_dir)) {}

    Graph run() {
        read_opset();
        collect_constants();
        index_consumers();
        name_nodes();
        sort_nodes();
        read_input();
        for (size_t index : order_) convert(index);
        read_output();
        drop_dead_nodes();
        try {
            infer_shapes(graph_);
        } catch (const Error& e) {
            fail(e.what());
        }
        return std::move(graph_);
    }

private:
    const onnx::ModelProto& model_;
    const onnx::GraphProto& onnx_;
    std::string file_;
    std::string base_dir_; // empty: external tensor data cannot be resolved

    int64_t opset_ = 0;
    std::map<std::string, const onnx::TensorProto*> constants_; // initializers + Constant outputs
    std::deque<onnx::TensorProto> owned_constants_;             // Constant value_float etc.
    std::map<std::string, std::vector<size_t>> consumers_;      // value -> node indices
    std::vector<std::string> names_;                            // by ONNX node index
    std::vector<size_t> order_;                                 // topological order
    std::set<size_t> fused_; // Adds folded into a MatMul, a channel shuffle's later nodes
    std::map<std::string, std::string> alias_;                  // removed node output -> input
    std::map<std::string, std::vector<int64_t>> shapes_;        // per-image shapes so far
    std::map<std::string, ShapeValue> shape_values_;            // folded shape computations
    size_t current_ = 0;                                        // node being converted
    Graph graph_;

    // ---- errors ---------------------------------------------------------------------------------

    [[noreturn]] void fail(const std::string& message) const {
        throw Error(file_ + ": " + message);
    }

    [[noreturn]] void fail_node(const std::string& message) const {
        const auto& node = onnx_.node(static_cast<int>(current_));
        fail("node '" + names_[current_] + "' (" + node.op_type() + "): " + message);
    }

    // ---- model-level reading --------------------------------------------------------------------

    void read_opset() {
        for (const auto& entry : model_.opset_import()) {
            if (is_default_domain(entry.domain())) opset_ = entry.version();
        }
        if (opset_ == 0) fail("the model declares no ai.onnx opset (opset_import is empty)");
        if (opset_ < min_opset || opset_ > max_opset) {
            fail("opset " + std::to_string(opset_) +
                 " is not supported; export the model with an "
                 "opset between 11 and " +
                 std::to_string(max_opset));
        }
    }

    void collect_constants() {
        for (const auto& initializer : onnx_.initializer()) {
            constants_[initializer.name()] = &initializer;
        }
        for (int i = 0; i < onnx_.node_size(); ++i) {
            const auto& node = onnx_.node(i);
            if (node.op_type() != "Constant" || !is_default_domain(node.domain())) continue;
            if (node.output_size() != 1) continue; // reported when the node is converted
            constants_[node.output(0)] = constant_value(node);
        }
        alias_constant_identities();
    }

    // An Identity of a constant is that constant: PyTorch's exporter stores tensors that are
    // equal (the folded biases of a freshly initialised network) once and feeds each further use
    // through an Identity. Chains of them resolve in any node order.
    void alias_constant_identities() {
        for (bool changed = true; changed;) {
            changed = false;
            for (const auto& node : onnx_.node()) {
                if (node.op_type() != "Identity" || !is_default_domain(node.domain()) ||
                    node.input_size() != 1 || node.output_size() != 1 || node.output(0).empty())
                    continue;
                auto source = constants_.find(node.input(0));
                if (source == constants_.end() || constants_.count(node.output(0))) continue;
                constants_[node.output(0)] = source->second;
                changed = true;
            }
        }
    }

    // The value of a Constant node, in whichever attribute it is stored.
    const onnx::TensorProto* constant_value(const onnx::NodeProto& node) {
        for (const auto& attribute : node.attribute()) {
            if (attribute.name() == "value") return &attribute.t();
            onnx::TensorProto& made = owned_constants_.emplace_back();
            if (attribute.name() == "value_float") {
                made.set_data_type(onnx::TensorProto::FLOAT);
                made.add_float_data(attribute.f());
            } else if (attribute.name() == "value_floats") {
                made.set_data_type(onnx::TensorProto::FLOAT);
                made.add_dims(attribute.floats_size());
                for (float f : attribute.floats()) made.add_float_data(f);
            } else if (attribute.name() == "value_int") {
                made.set_data_type(onnx::TensorProto::INT64);
                made.add_int64_data(attribute.i());
            } else if (attribute.name() == "value_ints") {
                made.set_data_type(onnx::TensorProto::INT64);
                made.add_dims(attribute.ints_size());
                for (int64_t v : attribute.ints()) made.add_int64_data(v);
            } else {
                owned_constants_.pop_back();
                continue;
            }
            return &made;
        }
        // A Constant we cannot read (sparse_value, strings): consumers report it as non-float.
        onnx::TensorProto& unknown = owned_constants_.emplace_back();
        unknown.set_data_type(onnx::TensorProto::UNDEFINED);
        return &unknown;
    }

    void index_consumers() {
        for (int i = 0; i < onnx_.node_size(); ++i) {
            for (const auto& input : onnx_.node(i).input()) {
                if (!input.empty()) consumers_[input].push_back(static_cast<size_t>(i));
            }
        }
    }

    // ONNX names, or "<OpType>_<index>"; duplicates get "_1", "_2", ... (never an explicit name
    // of another node, so a later named node keeps its name).
    void name_nodes() {
        std::set<std::string> explicit_names, used;
        for (const auto& node : onnx_.node()) {
            if (!node.name().empty()) explicit_names.insert(node.name());
        }
        for (int i = 0; i < onnx_.node_size(); ++i) {
            const auto& node = onnx_.node(i);
            std::string base =
                node.name().empty() ? node.op_type() + "_" + std::to_string(i) : node.name();
            std::string name = base;
            for (int k = 1; used.count(name) || (name != base && explicit_names.count(name)); ++k) {
                name = base + "_" + std::to_string(k);
            }
            used.insert(name);
            names_.push_back(name);
        }
    }

    // Kahn's algorithm, keeping file order among ready nodes (exporters already sort; this only
    // repairs files that do not).
    void sort_nodes() {
        std::set<std::string> available;
        for (const auto& [name, tensor] : constants_) available.insert(name);
        for (const auto& input : onnx_.input()) available.insert(input.name());
        std::map<std::string, size_t> producer;
        for (int i = 0; i < onnx_.node_size(); ++i) {
            for (const auto& output : onnx_.node(i).output()) {
                if (!output.empty()) producer[output] = static_cast<size_t>(i);
            }
        }
        std::vector<bool> done(static_cast<size_t>(onnx_.node_size()), false);
        while (order_.size() < done.size()) {
            bool progressed = false;
            for (size_t i = 0; i < done.size(); ++i) {
                if (done[i] || !inputs_ready(i, available, producer)) continue;
                done[i] = true;
                progressed = true;
                order_.push_back(i);
                for (const auto& output : onnx_.node(static_cast<int>(i)).output()) {
                    available.insert(output);
                }
            }
            if (!progressed) {
                for (size_t i = 0; i < done.size(); ++i) {
                    if (!done[i]) {
                        current_ = i;
                        fail_node("its inputs form a cycle; the graph is not a DAG");
                    }
                }
            }
        }
    }

    bool inputs_ready(size_t index, const std::set<std::string>& available,
                      const std::map<std::string, size_t>& producer) {
        for (const auto& input : onnx_.node(static_cast<int>(index)).input()) {
            if (input.empty() || available.count(input)) continue;
            if (!producer.count(input)) {
                current_ = index;
                fail_node("input '" + input +
                          "' is produced by no node, initializer or graph input");
            }
            return false;
        }
        return true;
    }

    void read_input() {
        std::vector<const onnx::ValueInfoProto*> inputs;
        for (const auto& input : onnx_.input()) {
            if (!constants_.count(input.name())) inputs.push_back(&input);
        }
        if (inputs.size() != 1) {
            fail("the model has " + std::to_string(inputs.size()) +
                 " graph inputs (besides "
                 "initializers); exactly one image input [N, C, H, W] is supported");
        }
        const auto& input = *inputs.front();
        const auto& type = input.type();
        if (!type.has_tensor_type()) fail("graph input '" + input.name() + "' is not a tensor");
        if (type.tensor_type().elem_type() != onnx::TensorProto::FLOAT) {
            fail("graph input '" + input.name() + "' has element type " +
                 data_type_name(type.tensor_type().elem_type()) + "; only float32 is supported");
        }
        const auto& shape = type.tensor_type().shape();
        std::vector<int64_t> per_image;
        for (int d = 1; d < shape.dim_size(); ++d) {
            const auto& dim = shape.dim(d);
            per_image.push_back(dim.has_dim_value() ? dim.dim_value() : -1);
        }
        bool fixed =
            std::all_of(per_image.begin(), per_image.end(), [](int64_t d) { return d > 0; });
        if (shape.dim_size() != 4 || !fixed) {
            fail("graph input '" + input.name() +
                 "' must have shape [N, C, H, W] with fixed C, H, "
                 "W (N may be symbolic); it has rank " +
                 std::to_string(shape.dim_size()) + (fixed ? "" : " and unknown dimensions"));
        }
        graph_.input = input.name();
        graph_.input_shape = per_image;
        shapes_[input.name()] = per_image;
    }

    void read_output() {
        if (onnx_.output_size() != 1) {
            fail("the model has " + std::to_string(onnx_.output_size()) +
                 " graph outputs; exactly one (the logits) is supported");
        }
        std::string output = resolve(onnx_.output(0).name());
        if (output == graph_.input)
            fail("the graph output is the graph input: the model computes nothing");
        if (!shapes_.count(output)) {
            fail("graph output '" + onnx_.output(0).name() +
                 "' is not computed by a supported node");
        }
        graph_.output = output;
    }

    // Nodes whose outputs never reach the graph output (left over by exporters) are dropped so
    // that costs count only what the model computes.
    void drop_dead_nodes() {
        std::set<std::string> needed{graph_.output};
        std::vector<Node> kept;
        for (auto it = graph_.nodes.rbegin(); it != graph_.nodes.rend(); ++it) {
            if (!needed.count(it->output)) continue;
            needed.insert(it->inputs.begin(), it->inputs.end());
            kept.push_back(std::move(*it));
        }
        graph_.nodes.assign(std::make_move_iterator(kept.rbegin()),
                            std::make_move_iterator(kept.rend()));
    }

    // ---- values
    // -----------------------------------------------------------------------------------

    std::string resolve(std::string value) const {
        for (auto it = alias_.find(value); it != alias_.end(); it = alias_.find(value))
            value = it->second;
        return value;
    }

    bool is_constant(const std::string& value) const { return constants_.count(value) > 0; }

    // An input computed at run time (not a constant), renamed through removed nodes.
    std::string activation(const std::string& onnx_value) const {
        if (is_constant(onnx_value)) {
            fail_node("input '" + onnx_value + "' is a constant where an activation is expected");
        }
        std::string value = resolve(onnx_value);
        if (!shapes_.count(value)) {
            fail_node("input '" + onnx_value + "' is not computed by a supported node");
        }
        return value;
    }

    const std::vector<int64_t>& shape_of(const std::string& ir_value) const {
        return shapes_.at(ir_value);
    }

    const onnx::TensorProto& constant(const std::string& value, const std::string& role) const {
        auto it = constants_.find(value);
        if (it == constants_.end()) {
            fail_node("its " + role + " '" + value + "' is computed at run time; only constant " +
                      role + "s (initializers or Constant nodes) are supported");
        }
        return *it->second;
    }

    // The bytes of a tensor stored in raw_data or in an external file next to the model.
    std::string tensor_bytes(const onnx::TensorProto& tensor, const std::string& role,
                             int64_t expected_bytes) const {
        bool external = tensor.data_location() == onnx::TensorProto::EXTERNAL ||
                        tensor.external_data_size() > 0;
        std::string bytes =
            external ? external_bytes(tensor, role, expected_bytes) : tensor.raw_data();
        if (static_cast<int64_t>(bytes.size()) != expected_bytes) {
            fail_node("its " + role + " '" + tensor.name() + "' has " +
                      std::to_string(bytes.size()) + " bytes of data for shape " +
                      join(dims_of(tensor)) + " (expected " + std::to_string(expected_bytes) +
                      "); the model is corrupt");
        }
        return bytes;
    }

    // Reads `expected_bytes` at the tensor's offset (the caller reports a short read).
    std::string external_bytes(const onnx::TensorProto& tensor, const std::string& role,
                               int64_t expected_bytes) const {
        std::string location;
        int64_t offset = 0;
        for (const auto& entry : tensor.external_data()) {
            if (entry.key() == "location") location = entry.value();
            if (entry.key() == "offset" || entry.key() == "length") {
                int64_t number = -1;
                std::istringstream(entry.value()) >> number;
                if (number < 0) {
                    fail_node("its " + role + " '" + tensor.name() +
                              "' has the invalid external "
                              "data " +
                              entry.key() + " '" + entry.value() + "'");
                }
                if (entry.key() == "offset") offset = number;
                if (entry.key() == "length" && number != expected_bytes) {
                    fail_node("its " + role + " '" + tensor.name() + "' has " + entry.value() +
                              " bytes of external data for shape " + join(dims_of(tensor)) +
                              " (expected " + std::to_string(expected_bytes) + ")");
                }
            }
        }
        const std::string where = "its " + role + " '" + tensor.name() +
                                  "' keeps its data in the "
                                  "external file '" +
                                  location + "'";
        const std::string fix =
            "; keep that file next to the model, or save the model with its "
            "data inside (onnx.save_model(model, path, save_as_external_data=False))";
        if (base_dir_.empty())
            fail_node(where + ", which cannot be read from in-memory bytes" + fix);
        std::filesystem::path relative(location);
        bool escapes = relative.is_absolute() || location.empty() ||
                       std::any_of(relative.begin(), relative.end(),
                                   [](const auto& part) { return part == ".."; });
        if (escapes) fail_node(where + ", a path outside the model's directory" + fix);
        std::ifstream in(std::filesystem::path(base_dir_) / relative, std::ios::binary);
        if (!in) fail_node(where + ", which cannot be opened (" + std::strerror(errno) + ")" + fix);
        in.seekg(offset);
        std::string bytes(static_cast<size_t>(expected_bytes), '\0');
        in.read(bytes.data(), expected_bytes);
        bytes.resize(static_cast<size_t>(std::max<std::streamsize>(0, in.gcount())));
        return bytes;
    }

    static std::vector<int64_t> dims_of(const onnx::TensorProto& tensor) {
        return {tensor.dims().begin(), tensor.dims().end()};
    }

    // The element count of a constant, checked before anything is allocated for it.
    int64_t element_count(const onnx::TensorProto& tensor, const std::string& role) const {
        constexpr int64_t limit = int64_t{1} << 36; // far beyond any model this tool handles
        int64_t count = 1;
        for (int64_t d : tensor.dims()) {
            if (d < 0 || (d > 0 && count > limit / d)) {
                fail_node("its " + role + " '" + tensor.name() + "' has the invalid shape " +
                          join(dims_of(tensor)) + "; the model is corrupt");
            }
            count *= d;
        }
        return count;
    }

    Tensor float_tensor(const std::string& value, const std::string& role) const {
        const onnx::TensorProto& proto = constant(value, role);
        if (proto.data_type() != onnx::TensorProto::FLOAT) {
            fail_node("its " + role + " '" + value + "' has element type " +
                      data_type_name(proto.data_type()) +
                      "; only float32 (FLOAT) values are supported: convert the model to float32");
        }
        int64_t count = element_count(proto, role);
        bool external =
            proto.data_location() == onnx::TensorProto::EXTERNAL || proto.external_data_size() > 0;
        if (!external && proto.raw_data().empty()) {
            if (proto.float_data_size() != count) {
                fail_node("its " + role + " '" + value + "' has " +
                          std::to_string(proto.float_data_size()) + " values for shape " +
                          join(dims_of(proto)) + "; the model is corrupt");
            }
            Tensor tensor(dims_of(proto));
            std::copy(proto.float_data().begin(), proto.float_data().end(), tensor.data.begin());
            return tensor;
        }
        std::string bytes = tensor_bytes(proto, role, count * 4);
        Tensor tensor(dims_of(proto));
        std::memcpy(tensor.data.data(), bytes.data(), bytes.size());
        return tensor;
    }

    std::vector<int64_t> int_values(const std::string& value, const std::string& role) const {
        const onnx::TensorProto& proto = constant(value, role);
        int64_t count = element_count(proto, role);
        std::vector<int64_t> values;
        if (proto.data_type() == onnx::TensorProto::INT64) {
            if (proto.int64_data_size() > 0)
                return {proto.int64_data().begin(), proto.int64_data().end()};
            std::string bytes = tensor_bytes(proto, role, count * 8);
            values.resize(static_cast<size_t>(count));
            std::memcpy(values.data(), bytes.data(), bytes.size());
        } else if (proto.data_type() == onnx::TensorProto::INT32) {
            if (proto.int32_data_size() > 0)
                return {proto.int32_data().begin(), proto.int32_data().end()};
            std::string bytes = tensor_bytes(proto, role, count * 4);
            std::vector<int32_t> narrow(static_cast<size_t>(count));
            std::memcpy(narrow.data(), bytes.data(), bytes.size());
            values.assign(narrow.begin(), narrow.end());
        } else {
            fail_node("its " + role + " '" + value + "' has element type " +
                      data_type_name(proto.data_type()) + "; expected INT64");
        }
        return values;
    }

    float scalar_float(const std::string& value, const std::string& role) const {
        Tensor tensor = float_tensor(value, role);
        if (tensor.numel() != 1) {
            fail_node("its " + role + " '" + value + "' has shape " + join(tensor.dims) +
                      "; expected a scalar");
        }
        return tensor.data[0];
    }

    // ---- attributes
    // -------------------------------------------------------------------------------

    const onnx::AttributeProto* attribute(const onnx::NodeProto& node, const std::string& name,
                                          onnx::AttributeProto::AttributeType type) const {
        for (const auto& a : node.attribute()) {
            if (a.name() != name) continue;
            if (a.type() != type && a.type() != onnx::AttributeProto::UNDEFINED) {
                fail_node("attribute '" + name + "' has type " +
                          onnx::AttributeProto::AttributeType_Name(a.type()) + "; expected " +
                          onnx::AttributeProto::AttributeType_Name(type));
            }
            return &a;
        }
        return nullptr;
    }

    int64_t attr_int(const onnx::NodeProto& node, const std::string& name, int64_t fallback) const {
        const auto* a = attribute(node, name, onnx::AttributeProto::INT);
        return a ? a->i() : fallback;
    }

    float attr_float(const onnx::NodeProto& node, const std::string& name, float fallback) const {
        const auto* a = attribute(node, name, onnx::AttributeProto::FLOAT);
        return a ? a->f() : fallback;
    }

    std::string attr_string(const onnx::NodeProto& node, const std::string& name,
                            const std::string& fallback) const {
        const auto* a = attribute(node, name, onnx::AttributeProto::STRING);
        return a ? a->s() : fallback;
    }

    std::vector<int64_t> attr_ints(const onnx::NodeProto& node, const std::string& name,
                                   std::vector<int64_t> fallback) const {
        const auto* a = attribute(node, name, onnx::AttributeProto::INTS);
        return a ? std::vector<int64_t>(a->ints().begin(), a->ints().end()) : fallback;
    }

    Dims2 attr_dims2(const onnx::NodeProto& node, const std::string& name, int64_t fallback) const {
        auto values = attr_ints(node, name, {fallback, fallback});
        if (values.size() != 2 || values[0] < 1 || values[1] < 1) {
            fail_node("attribute '" + name + "' is " + join(values) +
                      "; expected two positive values (only 2-D operations are supported)");
        }
        return {values[0], values[1]};
    }

    // ---- node building
    // ----------------------------------------------------------------------------

    void expect_inputs(const onnx::NodeProto& node, int minimum, int maximum) const {
        if (node.input_size() < minimum || node.input_size() > maximum || node.input(0).empty()) {
            fail_node("has " + std::to_string(node.input_size()) + " inputs; expected " +
                      std::to_string(minimum) +
                      (maximum > minimum ? " to " + std::to_string(maximum) : ""));
        }
    }

    // The node's extra outputs (MaxPool indices, Dropout mask, BN training statistics) must be
    // unused: the IR has one output per node.
    void expect_single_output(const onnx::NodeProto& node) const {
        if (node.output_size() < 1 || node.output(0).empty()) fail_node("has no output");
        for (int i = 1; i < node.output_size(); ++i) {
            const auto& extra = node.output(i);
            if (extra.empty() || !consumers_.count(extra)) continue;
            fail_node("its output " + std::to_string(i) + " ('" + extra +
                      "') is used; only the first output is supported");
        }
    }

    Node make_node(Op op, const onnx::NodeProto& proto) const {
        expect_single_output(proto);
        Node node;
        node.name = names_[current_];
        node.op = op;
        node.inputs = {activation(proto.input(0))};
        node.output = proto.output(0);
        return node;
    }

    void add_node(Node node, std::vector<int64_t> shape) {
        shapes_[node.output] = std::move(shape);
        graph_.nodes.push_back(std::move(node));
    }

    // Adds a node whose output shape the IR's shape rules give (mps::Error naming the node when
    // its inputs do not fit them).
    void add_checked_node(Node node) {
        std::vector<std::vector<int64_t>> in;
        for (const std::string& value : node.inputs) in.push_back(shape_of(value));
        std::vector<int64_t> shape;
        try {
            shape = output_shape(node, in);
        } catch (const Error& e) {
            fail(e.what());
        }
        add_node(std::move(node), std::move(shape));
    }

    // Input per-image shape, required to be {C, H, W}.
    const std::vector<int64_t>& image_shape(const Node& node) const {
        const auto& shape = shape_of(node.inputs[0]);
        if (shape.size() != 3) {
            fail_node("input '" + node.inputs[0] + "' has per-image shape " + join(shape) +
                      "; expected [C, H, W]");
        }
        return shape;
    }

    // Fills pad_begin/pad_end from auto_pad or pads, and returns the output spatial size.
    Dims2 window(const onnx::NodeProto& proto, Node& node, const std::vector<int64_t>& in) const {
        std::string auto_pad = attr_string(proto, "auto_pad", "NOTSET");
        Dims2 out{};
        for (size_t d = 0; d < 2; ++d) {
            int64_t extent = (node.kernel[d] - 1) * node.dilation[d] + 1;
            int64_t size = in[d + 1];
            if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
                int64_t target = (size + node.stride[d] - 1) / node.stride[d];
                int64_t total = std::max<int64_t>(0, (target - 1) * node.stride[d] + extent - size);
                int64_t small = total / 2;
                node.pad_begin[d] = auto_pad == "SAME_UPPER" ? small : total - small;
                node.pad_end[d] = total - node.pad_begin[d];
            } else if (auto_pad == "VALID") {
                node.pad_begin[d] = node.pad_end[d] = 0;
            } else if (auto_pad == "NOTSET") {
                auto pads = attr_ints(proto, "pads", {0, 0, 0, 0});
                bool valid = pads.size() == 4 && std::all_of(pads.begin(), pads.end(),
                                                             [](int64_t p) { return p >= 0; });
                if (!valid)
                    fail_node("attribute 'pads' is " + join(pads) + "; expected 4 values >= 0");
                node.pad_begin[d] = pads[d];
                node.pad_end[d] = pads[d + 2];
            } else {
                fail_node("auto_pad '" + auto_pad +
                          "' is not supported (NOTSET, VALID, SAME_UPPER, "
                          "SAME_LOWER are)");
            }
            int64_t span = size + node.pad_begin[d] + node.pad_end[d] - extent;
            if (span < 0) {
                fail_node("its window " + std::to_string(extent) +
                          " is larger than the padded "
                          "input size " +
                          std::to_string(size + node.pad_begin[d] + node.pad_end[d]));
            }
            out[d] = span / node.stride[d] + 1;
            if (attr_int(proto, "ceil_mode", 0) != 0 && span % node.stride[d] != 0)
                out[d] = ceil_mode_output(proto, node, d, size);
        }
        return out;
    }

    // ceil_mode=1 where it adds a window: the output size of PyTorch and ONNX Runtime (a last
    // window starting in the end padding is dropped), expressed as that much more end padding. A
    // max pool ignores padded elements and an average pool without count_include_pad counts only
    // the input's, so both compute exactly what ceil_mode does; an average pool counting its pads
    // would count the overhang too, which ONNX does not, and is refused.
    int64_t ceil_mode_output(const onnx::NodeProto& proto, Node& node, size_t d,
                             int64_t size) const {
        if (proto.op_type() == "AveragePool" && attr_int(proto, "count_include_pad", 0) != 0)
            fail_node("ceil_mode=1 with count_include_pad=1 changes the output size here, which "
                      "the IR cannot express; export the model with ceil_mode=False");
        const int64_t extent = (node.kernel[d] - 1) * node.dilation[d] + 1;
        const int64_t span = size + node.pad_begin[d] + node.pad_end[d] - extent;
        int64_t out = (span + node.stride[d] - 1) / node.stride[d] + 1;
        if ((out - 1) * node.stride[d] >= size + node.pad_begin[d]) --out;
        node.pad_end[d] += std::max<int64_t>(0, (out - 1) * node.stride[d] - span);
        return out;
    }

    // ---- ops
    // ----------------------------------------------------------------------------------------

    void convert(size_t index) {
        current_ = index;
        const onnx::NodeProto& proto = onnx_.node(static_cast<int>(index));
        const std::string& op = proto.op_type();
        if (!is_default_domain(proto.domain())) {
            fail_node("op type '" + op + "' of domain '" + proto.domain() +
                      "' is not supported; "
                      "supported ops (ai.onnx): " +
                      std::string(supported_ops));
        }
        if (fused_.count(index) || op == "Constant") return;
        if (op == "Split") return convert_split(proto); // several outputs
        expect_single_output(proto); // before any converter reads output(0)
        if (is_shape_op(op) && fold_shape_computation(proto)) return;
        if (op == "Conv") return convert_conv(proto);
        if (op == "Gemm") return convert_gemm(proto);
        if (op == "MatMul") return convert_matmul(proto);
        if (op == "BatchNormalization") return convert_batch_norm(proto);
        if (op == "Relu") return convert_elementwise(Op::relu, proto);
        if (op == "Clip") return convert_clip(proto);
        if (op == "MaxPool") return convert_pool(Op::max_pool, proto);
        if (op == "AveragePool") return convert_pool(Op::average_pool, proto);
        if (op == "GlobalAveragePool") return convert_global_average_pool(proto);
        if (op == "Add") return convert_add(proto);
        if (op == "Mul") return convert_mul(proto);
        if (op == "Concat") return convert_concat(proto);
        if (op == "Sigmoid") return convert_elementwise(Op::sigmoid, proto);
        if (op == "HardSigmoid") return convert_hard_sigmoid(proto);
        if (op == "HardSwish") return convert_elementwise(Op::hard_swish, proto);
        if (op == "Flatten") return convert_flatten(proto);
        if (op == "ReduceMean") return convert_reduce_mean(proto);
        if (op == "Reshape") return convert_reshape(proto);
        if (op == "Slice") return convert_slice(proto);
        if (op == "Identity" && is_constant(proto.output(0))) return; // a constant's alias
        if (op == "Identity" || op == "Dropout") return remove(proto);
        if (op == "Pad") return convert_pad(proto);
        if (op == "Softmax") return convert_softmax(proto);
        fail_node("op type '" + op +
                  "' is not supported; supported ops: " + std::string(supported_ops));
    }

    void convert_conv(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 3);
        Node node = make_node(Op::conv, proto);
        const auto& in = image_shape(node);
        node.weight = float_tensor(proto.input(1), "weight");
        const auto& w = node.weight.dims;
        if (w.size() != 4) {
            fail_node("weight has shape " + join(w) +
                      "; only 2-D convolutions (OIHW weights) are "
                      "supported");
        }
        if (proto.input_size() > 2 && !proto.input(2).empty()) {
            node.bias = float_tensor(proto.input(2), "bias");
            if (node.bias.dims != std::vector<int64_t>{w[0]}) {
                fail_node("bias has shape " + join(node.bias.dims) + "; expected [" +
                          std::to_string(w[0]) + "]");
            }
        }
        node.groups = attr_int(proto, "group", 1);
        node.kernel = {w[2], w[3]};
        auto kernel_shape = attr_ints(proto, "kernel_shape", {w[2], w[3]});
        if (kernel_shape != std::vector<int64_t>{w[2], w[3]}) {
            fail_node("kernel_shape " + join(kernel_shape) + " disagrees with the weight shape " +
                      join(w));
        }
        node.stride = attr_dims2(proto, "strides", 1);
        node.dilation = attr_dims2(proto, "dilations", 1);
        Dims2 out = window(proto, node, in);
        // Read before the move: `w` is the node's own weight shape, and which argument is
        // evaluated first is up to the compiler (clang reads it moved-from: found by fuzz_onnx).
        const int64_t out_channels = w[0];
        add_node(std::move(node), {out_channels, out[0], out[1]});
    }

    void convert_pool(Op op, const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(op, proto);
        const auto& in = image_shape(node);
        if (!attribute(proto, "kernel_shape", onnx::AttributeProto::INTS)) {
            fail_node("has no kernel_shape attribute");
        }
        node.kernel = attr_dims2(proto, "kernel_shape", 1);
        node.stride = attr_dims2(proto, "strides", 1);
        if (attr_dims2(proto, "dilations", 1) != Dims2{1, 1}) {
            fail_node("dilated pooling is not supported");
        }
        if (op == Op::average_pool)
            node.count_include_pad = attr_int(proto, "count_include_pad", 0) != 0;
        Dims2 out = window(proto, node, in);
        add_node(std::move(node), {in[0], out[0], out[1]});
    }

    void convert_global_average_pool(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(Op::global_average_pool, proto);
        int64_t channels = image_shape(node)[0];
        add_node(std::move(node), {channels, 1, 1});
    }

    void convert_gemm(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 3);
        if (attr_int(proto, "transA", 0) != 0) fail_node("transA=1 is not supported");
        if (attr_float(proto, "alpha", 1.0f) != 1.0f || attr_float(proto, "beta", 1.0f) != 1.0f) {
            fail_node("alpha and beta other than 1 are not supported");
        }
        Tensor weight = float_tensor(proto.input(1), "weight");
        if (weight.dims.size() != 2)
            fail_node("weight has shape " + join(weight.dims) + "; expected 2-D");
        if (attr_int(proto, "transB", 0) == 0) weight = transposed(weight);
        std::optional<std::string> bias;
        if (proto.input_size() > 2 && !proto.input(2).empty()) bias = proto.input(2);
        add_fully_connected(proto, std::move(weight), bias, proto.output(0));
    }

    // MatMul by a constant [in, out]; an Add of a 1-D constant [out] that is its only consumer
    // becomes the bias (PyTorch exports Linear on N-D inputs this way).
    void convert_matmul(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 2);
        Tensor weight = float_tensor(proto.input(1), "weight");
        if (weight.dims.size() != 2)
            fail_node("weight has shape " + join(weight.dims) + "; expected 2-D");
        weight = transposed(weight);
        std::optional<std::string> bias;
        std::string output = proto.output(0);
        if (auto add = bias_add_after(proto, weight.dims[0])) {
            fused_.insert(add->first);
            bias = add->second;
            output = onnx_.node(static_cast<int>(add->first)).output(0);
        }
        add_fully_connected(proto, std::move(weight), bias, output);
    }

    // The (index, bias value) of an Add that adds a 1-D constant of `features` values to the
    // output of `matmul` and is its only consumer.
    std::optional<std::pair<size_t, std::string>> bias_add_after(const onnx::NodeProto& matmul,
                                                                 int64_t features) const {
        const std::string& value = matmul.output(0);
        auto it = consumers_.find(value);
        if (it == consumers_.end() || it->second.size() != 1) return std::nullopt;
        for (const auto& output : onnx_.output()) {
            if (output.name() == value) return std::nullopt;
        }
        size_t index = it->second.front();
        const auto& add = onnx_.node(static_cast<int>(index));
        if (add.op_type() != "Add" || !is_default_domain(add.domain()) || add.input_size() != 2 ||
            add.output_size() != 1 || add.output(0).empty()) {
            return std::nullopt; // an Add without its one output is reported when converted
        }
        const std::string& other = add.input(0) == value ? add.input(1) : add.input(0);
        if (!is_constant(other)) return std::nullopt;
        auto dims = dims_of(*constants_.at(other));
        if (dims != std::vector<int64_t>{features}) return std::nullopt;
        return std::make_pair(index, other);
    }

    void add_fully_connected(const onnx::NodeProto& proto, Tensor weight,
                             const std::optional<std::string>& bias, const std::string& output) {
        Node node = make_node(Op::fully_connected, proto);
        node.output = output;
        const auto& in = shape_of(node.inputs[0]);
        int64_t features = weight.dims[0];
        if (in.size() != 1 || in[0] != weight.dims[1]) {
            fail_node("input '" + node.inputs[0] + "' has per-image shape " + join(in) +
                      " but the weight [out, in] is " + join(weight.dims) +
                      "; a Flatten before it may be missing");
        }
        node.weight = std::move(weight);
        if (bias) { // without one the bias stays empty, as for conv
            Tensor b = float_tensor(*bias, "bias");
            node.bias = Tensor({features}, 0.0f);
            if (b.numel() == 1) {
                std::fill(node.bias.data.begin(), node.bias.data.end(), b.data[0]);
            } else if (b.numel() == features && (b.dims.size() == 1 || b.dims[0] == 1)) {
                node.bias.data = std::move(b.data);
            } else {
                fail_node("bias has shape " + join(b.dims) + "; expected [" +
                          std::to_string(features) + "]");
            }
        }
        add_node(std::move(node), {features});
    }

    static Tensor transposed(const Tensor& matrix) {
        int64_t rows = matrix.dims[0], cols = matrix.dims[1];
        Tensor result({cols, rows});
        for (int64_t r = 0; r < rows; ++r) {
            for (int64_t c = 0; c < cols; ++c)
                result.data[c * rows + r] = matrix.data[r * cols + c];
        }
        return result;
    }

    void convert_batch_norm(const onnx::NodeProto& proto) {
        expect_inputs(proto, 5, 5);
        if (attr_int(proto, "training_mode", 0) != 0) {
            fail_node("training_mode=1 is not supported; export the model in eval mode");
        }
        if (attr_int(proto, "spatial", 1) != 1) fail_node("spatial=0 is not supported");
        Node node = make_node(Op::batch_norm, proto);
        node.epsilon = attr_float(proto, "epsilon", 1e-5f);
        node.weight = float_tensor(proto.input(1), "scale");
        node.bias = float_tensor(proto.input(2), "bias");
        node.mean = float_tensor(proto.input(3), "mean");
        node.var = float_tensor(proto.input(4), "variance");
        auto shape = shape_of(node.inputs[0]);
        for (const Tensor* t : {&node.weight, &node.bias, &node.mean, &node.var}) {
            if (t->dims.size() != 1 || shape.empty() || t->dims[0] != shape[0]) {
                fail_node("parameter shape " + join(t->dims) + " does not match the " +
                          std::to_string(shape.empty() ? 0 : shape[0]) + " input channels");
            }
        }
        add_node(std::move(node), shape);
    }

    void convert_elementwise(Op op, const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(op, proto);
        auto shape = shape_of(node.inputs[0]);
        add_node(std::move(node), shape);
    }

    // Opsets < 11 store min/max as attributes, later ones as optional inputs; absent = unbounded.
    void convert_clip(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 3);
        Node node = make_node(Op::clip, proto);
        const float infinity = std::numeric_limits<float>::infinity();
        node.clip_min = attr_float(proto, "min", -infinity);
        node.clip_max = attr_float(proto, "max", infinity);
        if (proto.input_size() > 1 && !proto.input(1).empty())
            node.clip_min = scalar_float(proto.input(1), "min");
        if (proto.input_size() > 2 && !proto.input(2).empty())
            node.clip_max = scalar_float(proto.input(2), "max");
        auto shape = shape_of(node.inputs[0]);
        add_node(std::move(node), shape);
    }

    void convert_add(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 2);
        for (const auto& input : proto.input()) {
            if (!is_constant(input)) continue;
            fail_node("adds the constant '" + input +
                      "'; adding a constant is only supported as "
                      "the bias right after a MatMul (fold it into the preceding layer's bias)");
        }
        Node node = make_node(Op::add, proto);
        node.inputs.push_back(activation(proto.input(1)));
        auto shape = shape_of(node.inputs[0]);
        add_node(std::move(node), shape);
    }

    // Mul of two activations (SiLU's x * sigmoid(x), squeeze-excitation's per-channel scale).
    void convert_mul(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 2);
        for (const auto& input : proto.input()) {
            if (!is_constant(input)) continue;
            fail_node("multiplies by the constant '" + input +
                      "'; only products of two computed values are supported");
        }
        Node node = make_node(Op::mul, proto);
        node.inputs.push_back(activation(proto.input(1)));
        add_checked_node(std::move(node));
    }

    // Concat along channels only: axis 1 (or -3) of [N, C, H, W]. One input is no concatenation
    // and is removed like an Identity.
    void convert_concat(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, std::numeric_limits<int>::max());
        if (!attribute(proto, "axis", onnx::AttributeProto::INT)) fail_node("has no axis attribute");
        const int64_t axis = attr_int(proto, "axis", 1);
        if (axis != 1 && axis != -3)
            fail_node("concatenation along axis " + std::to_string(axis) +
                      " is not supported; only along channels (axis 1 of [N, C, H, W])");
        if (proto.input_size() == 1) return remove(proto);
        Node node = make_node(Op::concat, proto);
        for (int i = 1; i < proto.input_size(); ++i)
            node.inputs.push_back(activation(proto.input(i)));
        add_checked_node(std::move(node));
    }

    void convert_hard_sigmoid(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(Op::hard_sigmoid, proto);
        node.alpha = attr_float(proto, "alpha", 0.2f);
        node.beta = attr_float(proto, "beta", 0.5f);
        auto shape = shape_of(node.inputs[0]);
        add_node(std::move(node), shape);
    }

    void convert_flatten(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(Op::flatten, proto);
        const auto& shape = shape_of(node.inputs[0]);
        int64_t rank = static_cast<int64_t>(shape.size()) + 1;
        int64_t axis = attr_int(proto, "axis", 1);
        if (axis < 0) axis += rank;
        if (axis != 1) fail_node("axis " + std::to_string(axis) + " is not supported; only axis 1");
        int64_t size = Tensor::count(shape);
        add_node(std::move(node), {size});
    }

    // ReduceMean over the two spatial axes of [N, C, H, W] is a global average pool (mnasnet,
    // squeeze-excitation); without keepdims it is followed by a flatten to [N, C].
    void convert_reduce_mean(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        Node node = make_node(Op::global_average_pool, proto);
        const int64_t channels = image_shape(node)[0];
        std::vector<int64_t> axes = attr_ints(proto, "axes", {});
        for (int64_t& axis : axes) axis = axis < 0 ? axis + 4 : axis;
        std::sort(axes.begin(), axes.end());
        if (axes != std::vector<int64_t>{2, 3})
            fail_node("ReduceMean over axes " + join(attr_ints(proto, "axes", {})) +
                      " is not supported; only over the spatial axes [2, 3] of [N, C, H, W] "
                      "(a global average pool)");
        if (attr_int(proto, "keepdims", 1) != 0) return add_node(std::move(node), {channels, 1, 1});
        Node flatten;
        flatten.name = node.name + "/flatten";
        flatten.op = Op::flatten;
        flatten.output = node.output;
        node.output += "/spatial_mean";
        flatten.inputs = {node.output};
        add_node(std::move(node), {channels, 1, 1});
        add_node(std::move(flatten), {channels});
    }

    // ---- shape computations and channel rearrangements ------------------------------------------

    bool is_integer_constant(const std::string& value) const {
        auto it = constants_.find(value);
        return it != constants_.end() && (it->second->data_type() == onnx::TensorProto::INT64 ||
                                          it->second->data_type() == onnx::TensorProto::INT32);
    }

    ShapeValue shape_value(const std::string& value) const {
        if (auto it = shape_values_.find(value); it != shape_values_.end()) return it->second;
        ShapeValue v;
        v.dims = dims_of(*constants_.at(value));
        v.values = int_values(value, "input");
        v.batch.assign(v.values.size(), false);
        return v;
    }

    // A node of a shape computation (onnx_shape_folding.h) whose inputs are integer constants, or
    // a Shape of an activation, is evaluated now and its output becomes a constant. Otherwise
    // (an Add of activations, say) it is left to its converter.
    bool fold_shape_computation(const onnx::NodeProto& proto) {
        std::vector<std::optional<ShapeValue>> held;
        if (proto.op_type() == "Shape") {
            expect_inputs(proto, 1, 1);
            if (is_constant(proto.input(0))) return false;
            held.emplace_back(shape_of_activation(shape_of(activation(proto.input(0)))));
        } else {
            for (const auto& input : proto.input()) {
                if (!input.empty() && !is_integer_constant(input)) return false;
                held.emplace_back(input.empty() ? std::nullopt
                                                : std::optional<ShapeValue>(shape_value(input)));
            }
        }
        std::vector<const ShapeValue*> inputs;
        for (const auto& v : held) inputs.push_back(v ? &*v : nullptr);
        ShapeValue out;
        try {
            out = fold_shape_node(proto, opset_, inputs);
        } catch (const Error& e) {
            fail_node(std::string("cannot evaluate this shape computation at import: ") + e.what());
        }
        onnx::TensorProto& made = owned_constants_.emplace_back();
        made.set_name(proto.output(0));
        made.set_data_type(onnx::TensorProto::INT64);
        for (int64_t d : out.dims) made.add_dims(d);
        for (size_t i = 0; i < out.values.size(); ++i) made.add_int64_data(out.batch[i] ? 0 : out.values[i]);
        constants_[proto.output(0)] = &made;
        shape_values_[proto.output(0)] = std::move(out);
        return true;
    }

    // The per-image shape a Reshape to `target` gives an input of per-image shape `in`, or
    // nullopt when the target does not keep the batch as its first dimension (0, -1 or the
    // traced batch size) or does not fit. 0 copies the input's dimension, -1 takes the rest.
    static std::optional<std::vector<int64_t>> per_image_target(std::vector<int64_t> target,
                                                                const std::vector<int64_t>& in) {
        if (target.size() < 2) return std::nullopt;
        const int64_t count = Tensor::count(in);
        const bool batch_inferred = target[0] == -1;
        std::vector<int64_t> per(target.begin() + 1, target.end());
        int64_t known = 1, unknown = -1;
        for (size_t i = 0; i < per.size(); ++i) {
            if (per[i] == 0 && i < in.size()) per[i] = in[i];
            if (per[i] == -1 && (unknown >= 0 || batch_inferred)) return std::nullopt;
            if (per[i] == -1) unknown = static_cast<int64_t>(i);
            else if (per[i] < 1) return std::nullopt;
            else known *= per[i];
        }
        if (target[0] < -1) return std::nullopt;
        if (unknown >= 0) {
            if (known == 0 || count % known != 0) return std::nullopt;
            per[static_cast<size_t>(unknown)] = count / known;
        }
        if (Tensor::count(per) != count) return std::nullopt;
        return per;
    }

    // A Reshape's target per-image shape, or a message naming it.
    std::optional<std::vector<int64_t>> reshape_target(const onnx::NodeProto& proto,
                                                       const std::vector<int64_t>& in) const {
        const auto target = int_values(proto.input(1), "shape");
        const bool zero = std::count(target.begin(), target.end(), 0) > 0;
        if (zero && attr_int(proto, "allowzero", 0) != 0) return std::nullopt;
        return per_image_target(target, in);
    }

    // The single reader of `value`, when it is an ai.onnx `op_type` node and `value` is not the
    // graph output.
    std::optional<size_t> sole_reader(const std::string& value, const std::string& op_type) const {
        auto it = consumers_.find(value);
        if (it == consumers_.end() || it->second.size() != 1) return std::nullopt;
        for (const auto& output : onnx_.output())
            if (output.name() == value) return std::nullopt;
        const auto& node = onnx_.node(static_cast<int>(it->second.front()));
        if (node.op_type() != op_type || !is_default_domain(node.domain()) ||
            node.output_size() != 1)
            return std::nullopt;
        return it->second.front();
    }

    // PyTorch's channel_shuffle: Reshape to [N, g, C / g, H, W], Transpose perm [0, 2, 1, 3, 4],
    // Reshape back to [N, C, H, W], each the only reader of the one before. Returns the groups
    // and the indices of the Transpose and the last Reshape.
    struct ShuffleMatch {
        int64_t groups;
        size_t transpose, merge;
    };
    std::optional<ShuffleMatch> channel_shuffle_at(
        const onnx::NodeProto& proto, const std::vector<int64_t>& in,
        const std::vector<int64_t>& grouped) const {
        if (in.size() != 3 || grouped.size() != 4 || grouped[0] * grouped[1] != in[0] ||
            grouped[2] != in[1] || grouped[3] != in[2])
            return std::nullopt;
        const auto transpose = sole_reader(proto.output(0), "Transpose");
        if (!transpose) return std::nullopt;
        const auto& t = onnx_.node(static_cast<int>(*transpose));
        if (attr_ints(t, "perm", {}) != std::vector<int64_t>{0, 2, 1, 3, 4}) return std::nullopt;
        const auto merge = sole_reader(t.output(0), "Reshape");
        if (!merge) return std::nullopt;
        const auto& m = onnx_.node(static_cast<int>(*merge));
        if (m.input_size() != 2 || !is_integer_constant(m.input(1))) return std::nullopt;
        const std::vector<int64_t> swapped{grouped[1], grouped[0], grouped[2], grouped[3]};
        if (reshape_target(m, swapped) != in) return std::nullopt;
        return ShuffleMatch{grouped[0], *transpose, *merge};
    }

    // Reshape to [batch, features] (a flatten), to the input's own shape (removed), or as the
    // first step of a channel shuffle. Anything else keeps a shape the IR cannot express.
    void convert_reshape(const onnx::NodeProto& proto) {
        expect_inputs(proto, 2, 2);
        Node node = make_node(Op::flatten, proto);
        const auto& in = shape_of(node.inputs[0]);
        const auto per = reshape_target(proto, in);
        if (per && per->size() == 1) return add_node(std::move(node), *per);
        if (per && *per == in) return remove(proto);
        if (const auto shuffle = per ? channel_shuffle_at(proto, in, *per) : std::nullopt) {
            fused_.insert(shuffle->transpose);
            fused_.insert(shuffle->merge);
            node.op = Op::channel_shuffle;
            node.groups = shuffle->groups;
            node.output = onnx_.node(static_cast<int>(shuffle->merge)).output(0);
            return add_checked_node(std::move(node));
        }
        fail_node("reshape to " + join(int_values(proto.input(1), "shape")) +
                  " is not supported; only a reshape to 2-D [batch, " +
                  std::to_string(Tensor::count(in)) +
                  "] (a flatten) or PyTorch's channel shuffle (Reshape to [N, groups, C / groups, "
                  "H, W], Transpose perm [0, 2, 1, 3, 4], Reshape to [N, C, H, W]) is");
    }

    // [begin, end) of a channel range as ONNX's Slice reads it (negative counts from the end,
    // clamped to the channels).
    static std::pair<int64_t, int64_t> channel_range(int64_t begin, int64_t end, int64_t channels) {
        auto clamp = [&](int64_t i) {
            return std::clamp(i < 0 ? i + channels : i, int64_t{0}, channels);
        };
        return {clamp(begin), clamp(end)};
    }

    // A channel_slice of [begin, end) named `name` writing `output` (the whole range: removed).
    void add_channel_slice(const onnx::NodeProto& proto, std::string name, std::string output,
                           int64_t begin, int64_t end) {
        Node node;
        node.name = std::move(name);
        node.op = Op::channel_slice;
        node.inputs = {activation(proto.input(0))};
        node.output = std::move(output);
        const int64_t channels = image_shape(node)[0];
        if (begin == 0 && end == channels) {
            alias_[node.output] = node.inputs[0];
            return;
        }
        node.channel_begin = begin;
        node.channel_end = end;
        add_checked_node(std::move(node));
    }

    // Slice along channels with step 1 (PyTorch's chunk and split on dim 1); the other axes of
    // [N, C, H, W] only when taken whole.
    void convert_slice(const onnx::NodeProto& proto) {
        const bool attributes = opset_ < 10;
        expect_inputs(proto, attributes ? 1 : 3, attributes ? 1 : 5);
        const std::string input = activation(proto.input(0));
        const std::vector<int64_t> in = shape_of(input);
        auto list = [&](int i, const char* name, std::vector<int64_t> fallback) {
            if (attributes) return attr_ints(proto, name, fallback);
            if (proto.input_size() > i && !proto.input(i).empty())
                return int_values(proto.input(i), name);
            return fallback;
        };
        const auto starts = list(1, "starts", {}), ends = list(2, "ends", {});
        std::vector<int64_t> axes = list(3, "axes", {}), steps = list(4, "steps", {});
        if (axes.empty())
            for (size_t i = 0; i < starts.size(); ++i) axes.push_back(static_cast<int64_t>(i));
        steps.resize(starts.size(), 1);
        if (starts.size() != ends.size() || axes.size() != starts.size())
            fail_node("starts, ends and axes differ in length");
        int64_t begin = 0, end = in.at(0);
        for (size_t i = 0; i < axes.size(); ++i) {
            const int64_t axis = axes[i] < 0 ? axes[i] + 4 : axes[i];
            const int64_t size = axis >= 1 && axis <= 3 ? in.at(static_cast<size_t>(axis - 1)) : 0;
            const auto range = channel_range(starts[i], ends[i], size);
            const bool whole = range.first == 0 && range.second == size && steps[i] == 1;
            if (axis == 1 && steps[i] == 1 && range.first < range.second) {
                std::tie(begin, end) = range;
            } else if (!whole) {
                fail_node("slicing axis " + std::to_string(axes[i]) + " from " +
                          std::to_string(starts[i]) + " to " + std::to_string(ends[i]) +
                          " by " + std::to_string(steps[i]) +
                          " is not supported; only a non-empty channel range (axis 1, step 1)");
            }
        }
        add_channel_slice(proto, names_[current_], proto.output(0), begin, end);
    }

    // Split along channels: one channel_slice per used output, named "<node>", "<node>_1", ...
    void convert_split(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 2);
        const std::string input = activation(proto.input(0));
        const int64_t channels = shape_of(input).size() == 3 ? shape_of(input)[0] : 0;
        const int64_t axis = attr_int(proto, "axis", 0);
        if (axis != 1 && axis != -3)
            fail_node("split along axis " + std::to_string(axis) +
                      " is not supported; only along channels (axis 1 of [N, C, H, W])");
        std::vector<int64_t> sizes = proto.input_size() > 1 && !proto.input(1).empty()
                                         ? int_values(proto.input(1), "split")
                                         : attr_ints(proto, "split", {});
        const int64_t parts = proto.output_size();
        if (sizes.empty() && parts > 0 && channels % parts == 0)
            sizes.assign(static_cast<size_t>(parts), channels / parts);
        int64_t total = 0;
        for (int64_t size : sizes) total += size;
        if (static_cast<int64_t>(sizes.size()) != parts || total != channels)
            fail_node("splits " + std::to_string(channels) + " channels into " + join(sizes) +
                      " for " + std::to_string(parts) + " outputs; the sizes must add up");
        int64_t begin = 0;
        for (int i = 0; i < parts; ++i) {
            const int64_t end = begin + sizes[static_cast<size_t>(i)];
            const std::string& out = proto.output(i);
            const bool is_graph_output = onnx_.output_size() == 1 && onnx_.output(0).name() == out;
            if (!out.empty() && (consumers_.count(out) || is_graph_output))
                add_channel_slice(proto, names_[current_] + (i ? "_" + std::to_string(i) : ""),
                                  proto.output(i), begin, end);
            begin = end;
        }
    }

    // A Pad by zero everywhere changes nothing: PyTorch writes one before densenet's average
    // pools. Real padding would have to move into the next window op, which is not done.
    void convert_pad(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 4);
        const std::vector<int64_t> pads =
            proto.input_size() > 1 && !proto.input(1).empty() ? int_values(proto.input(1), "pads")
                                                              : attr_ints(proto, "pads", {});
        if (std::any_of(pads.begin(), pads.end(), [](int64_t p) { return p != 0; }))
            fail_node("pads " + join(pads) + " are not supported; only a Pad by zero (removed)");
        remove(proto);
    }

    void remove(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 3);
        expect_single_output(proto);
        alias_[proto.output(0)] = activation(proto.input(0));
    }

    // Softmax only as the very last node: the IR graph outputs the logits instead (argmax and
    // accuracy are unchanged).
    void convert_softmax(const onnx::NodeProto& proto) {
        expect_inputs(proto, 1, 1);
        bool is_graph_output =
            onnx_.output_size() == 1 && onnx_.output(0).name() == proto.output(0);
        if (!is_graph_output || consumers_.count(proto.output(0))) {
            fail_node(
                "Softmax is only supported as the last node (it is removed; the model outputs "
                "logits); supported ops: " +
                std::string(supported_ops));
        }
        remove(proto);
    }
};

Graph import_model(const std::string& bytes, const std::string& name, const std::string& base_dir) {
    onnx::ModelProto model;
    if (bytes.empty() || !model.ParseFromString(bytes)) {
        throw Error(name + ": not a valid ONNX model (protobuf parse failed)");
    }
    if (!model.has_graph() || model.ir_version() <= 0 || model.graph().node_size() == 0) {
        throw Error(name + ": not a valid ONNX model (no ir_version or no graph nodes)");
    }
    return Importer(model, name, base_dir).run();
}

// ------------------------------------------------------------------------------------------------
// Export
// ------------------------------------------------------------------------------------------------

// Opset 13 unless the graph needs a later op: files stay readable by older runtimes.
int64_t export_opset_for(const Graph& graph) {
    for (const Node& node : graph.nodes)
        if (node.op == Op::hard_swish) return hard_swish_opset;
    return export_opset;
}

class Exporter {
public:
    explicit Exporter(const Graph& graph) : graph_(graph) {}

    onnx::ModelProto run() {
        if (graph_.nodes.empty()) throw Error("export_onnx: the graph has no nodes");
        if (graph_.input_shape.size() != 3) {
            throw Error("export_onnx: graph input shape " + join(graph_.input_shape) +
                        " is not per-image [C, H, W]");
        }
        const bool shaped =
            graph_.shapes.count(graph_.input) &&
            std::all_of(graph_.nodes.begin(), graph_.nodes.end(),
                        [&](const Node& n) { return graph_.shapes.count(n.output) > 0; });
        if (!shaped) infer_shapes(shaped_ = graph_);
        known_shapes_ = shaped ? &graph_.shapes : &shaped_.shapes;
        onnx::ModelProto model;
        model.set_ir_version(export_ir_version);
        model.set_producer_name("mpsearch");
        model.set_producer_version("0.1");
        auto* opset = model.add_opset_import();
        opset->set_domain("");
        opset->set_version(export_opset_for(graph_));
        onnx::GraphProto* proto = model.mutable_graph();
        proto->set_name("mpsearch");
        b_.emplace(proto);
        name_values();
        OnnxBuilder::set_value_info(proto->add_input(), "input", graph_.input_shape);
        OnnxBuilder::set_value_info(proto->add_output(), "logits", shape_of(graph_.output));
        for (const Node& node : graph_.nodes) add_node(node);
        return model;
    }

private:
    const Graph& graph_;
    Graph shaped_; // a copy with shapes, when graph_ lacks some
    const std::map<std::string, std::vector<int64_t>>* known_shapes_ = nullptr;
    std::optional<OnnxBuilder> b_;
    std::map<std::string, std::string> value_names_; // IR value -> ONNX value

    const std::vector<int64_t>& shape_of(const std::string& value) const {
        return known_shapes_->at(value);
    }

    // The graph input and output become "input" and "logits"; other values keep their names
    // unless those clash.
    void name_values() {
        b_->reserve("input");
        b_->reserve("logits");
        value_names_[graph_.input] = "input";
        value_names_[graph_.output] = "logits";
        for (const Node& node : graph_.nodes) {
            if (!value_names_.count(node.output)) value_names_[node.output] = b_->unique(node.output);
        }
    }

    std::string value(const std::string& ir_value) const {
        auto it = value_names_.find(ir_value);
        if (it == value_names_.end()) {
            throw Error("export_onnx: value '" + ir_value + "' is read but never computed");
        }
        return it->second;
    }

    // A raw float32 initializer named after `base`; returns its name.
    std::string add_initializer(const std::string& base, const Tensor& tensor) {
        return b_->add_float(base, tensor.dims, tensor.data);
    }

    static void set_window(onnx::NodeProto* proto, const Node& node) {
        OnnxBuilder::set_ints(proto, "kernel_shape", {node.kernel[0], node.kernel[1]});
        OnnxBuilder::set_ints(proto, "strides", {node.stride[0], node.stride[1]});
        OnnxBuilder::set_ints(
            proto, "pads", {node.pad_begin[0], node.pad_begin[1], node.pad_end[0], node.pad_end[1]});
    }

    // The node's parameters as initializer inputs, in ONNX's input order.
    std::vector<std::string> parameters(const Node& node) {
        std::vector<std::string> names;
        auto add = [&](const char* suffix, const Tensor& t) {
            names.push_back(add_initializer(node.name + suffix, t));
        };
        switch (node.op) {
        case Op::conv:
        case Op::fully_connected:
            add(".weight", node.weight);
            if (!node.bias.empty()) add(".bias", node.bias);
            break;
        case Op::batch_norm:
            add(".weight", node.weight);
            add(".bias", node.bias);
            add(".mean", node.mean);
            add(".var", node.var);
            break;
        case Op::clip:
            add(".min", scalar(node.clip_min));
            add(".max", scalar(node.clip_max));
            break;
        default: break;
        }
        return names;
    }

    static const char* onnx_type(Op op) {
        switch (op) {
        case Op::conv: return "Conv";
        case Op::fully_connected: return "Gemm";
        case Op::batch_norm: return "BatchNormalization";
        case Op::relu: return "Relu";
        case Op::clip: return "Clip";
        case Op::max_pool: return "MaxPool";
        case Op::average_pool: return "AveragePool";
        case Op::global_average_pool: return "GlobalAveragePool";
        case Op::add: return "Add";
        case Op::flatten: return "Flatten";
        case Op::concat: return "Concat";
        case Op::sigmoid: return "Sigmoid";
        case Op::hard_sigmoid: return "HardSigmoid";
        case Op::hard_swish: return "HardSwish";
        case Op::mul: return "Mul";
        case Op::channel_affine:
        case Op::channel_shuffle:
        case Op::channel_slice: break; // onnx_channel_ops.h
        }
        return "";
    }

    void add_node(const Node& node) {
        std::vector<std::string> inputs;
        for (const auto& input : node.inputs) inputs.push_back(value(input));
        if (is_channel_op(node.op))
            return emit_channel_op(*b_, node, shape_of(node.inputs.at(0)), inputs.at(0),
                                   value(node.output));
        for (std::string& p : parameters(node)) inputs.push_back(std::move(p));
        auto* proto = b_->add_node_to(onnx_type(node.op), node.name, inputs, value(node.output));
        switch (node.op) {
        case Op::conv:
            set_window(proto, node);
            OnnxBuilder::set_ints(proto, "dilations", {node.dilation[0], node.dilation[1]});
            OnnxBuilder::set_int(proto, "group", node.groups);
            break;
        case Op::fully_connected: OnnxBuilder::set_int(proto, "transB", 1); break;
        case Op::batch_norm: OnnxBuilder::set_float(proto, "epsilon", node.epsilon); break;
        case Op::max_pool: set_window(proto, node); break;
        case Op::average_pool:
            set_window(proto, node);
            OnnxBuilder::set_int(proto, "count_include_pad", node.count_include_pad ? 1 : 0);
            break;
        case Op::flatten:
        case Op::concat: OnnxBuilder::set_int(proto, "axis", 1); break;
        case Op::hard_sigmoid:
            OnnxBuilder::set_float(proto, "alpha", node.alpha);
            OnnxBuilder::set_float(proto, "beta", node.beta);
            break;
        default: break;
        }
    }

    static Tensor scalar(float value) {
        Tensor t;
        t.data = {value};
        return t;
    }
};

} // namespace

Graph import_onnx(const std::string& path) {
    std::string bytes = read_whole_file(path, path);
    std::string base_dir = std::filesystem::path(path).parent_path().string();
    return import_model(bytes, path, base_dir.empty() ? "." : base_dir);
}

Graph import_onnx_bytes(const std::string& bytes, const std::string& name_for_errors) {
    return import_model(bytes, name_for_errors, "");
}

std::string export_onnx_bytes(const Graph& graph) {
    std::string bytes;
    if (!Exporter(graph).run().SerializeToString(&bytes)) {
        throw Failure("export_onnx: protobuf serialization failed (model larger than 2 GB?)");
    }
    return bytes;
}

void export_onnx(const Graph& graph, const std::string& path) {
    write_file_atomically(path, export_onnx_bytes(graph));
}

} // namespace mps
