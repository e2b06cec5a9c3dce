#pragma once
// Test helpers: ONNX models built by hand as protobufs, imported from bytes as "test.onnx", and
// the messages of the errors they raise.
#include "evaluator/base/error.h"
#include "evaluator/engine/inference.h"
#include "evaluator/io/onnx_io.h"
#include "evaluator/ref/reference.h"
#include "evaluator/ir/graph.h"
#include "evaluator/ir/tensor.h"

#include "tests/graph_builders.h"

#include <doctest/doctest.h>
#include <onnx/onnx_pb.h>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

namespace mps::test {

// The message of the mps::Error `action` throws, or "(no error)".
inline std::string error_of(const std::function<void()>& action) {
    try {
        action();
    } catch (const Error& e) {
        return e.what();
    }
    return "(no error)";
}

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

// Builds ONNX models by hand: an image input "x" [N, C, H, W] and one output.
class OnnxBuilder {
public:
    OnnxBuilder(std::vector<int64_t> per_image, int64_t opset = 13) {
        model_.set_ir_version(7);
        auto* o = model_.add_opset_import();
        o->set_domain("");
        o->set_version(opset);
        auto* input = model_.mutable_graph()->add_input();
        input->set_name("x");
        auto* type = input->mutable_type()->mutable_tensor_type();
        type->set_elem_type(onnx::TensorProto::FLOAT);
        type->mutable_shape()->add_dim()->set_dim_param("N");
        for (int64_t d : per_image) type->mutable_shape()->add_dim()->set_dim_value(d);
    }

    onnx::NodeProto& node(const std::string& op, const std::string& name,
                          std::vector<std::string> inputs, std::vector<std::string> outputs) {
        auto* n = model_.mutable_graph()->add_node();
        n->set_op_type(op);
        n->set_name(name);
        for (const auto& i : inputs) n->add_input(i);
        for (const auto& o : outputs) n->add_output(o);
        return *n;
    }

    static void ints(onnx::NodeProto& n, const std::string& name, std::vector<int64_t> values) {
        auto* a = n.add_attribute();
        a->set_name(name);
        a->set_type(onnx::AttributeProto::INTS);
        for (int64_t v : values) a->add_ints(v);
    }
    static void integer(onnx::NodeProto& n, const std::string& name, int64_t value) {
        auto* a = n.add_attribute();
        a->set_name(name);
        a->set_type(onnx::AttributeProto::INT);
        a->set_i(value);
    }
    static void real(onnx::NodeProto& n, const std::string& name, float value) {
        auto* a = n.add_attribute();
        a->set_name(name);
        a->set_type(onnx::AttributeProto::FLOAT);
        a->set_f(value);
    }
    static void string(onnx::NodeProto& n, const std::string& name, const std::string& value) {
        auto* a = n.add_attribute();
        a->set_name(name);
        a->set_type(onnx::AttributeProto::STRING);
        a->set_s(value);
    }

    static void fill(onnx::TensorProto& t, const Tensor& value, bool raw) {
        t.set_data_type(onnx::TensorProto::FLOAT);
        for (int64_t d : value.dims) t.add_dims(d);
        if (raw) {
            t.set_raw_data(std::string(reinterpret_cast<const char*>(value.data.data()),
                                       value.data.size() * sizeof(float)));
        } else {
            for (float v : value.data) t.add_float_data(v);
        }
    }

    onnx::TensorProto& initializer(const std::string& name, const Tensor& value, bool raw = true) {
        auto* t = model_.mutable_graph()->add_initializer();
        t->set_name(name);
        fill(*t, value, raw);
        return *t;
    }

    void int64_initializer(const std::string& name, std::vector<int64_t> values) {
        auto* t = model_.mutable_graph()->add_initializer();
        t->set_name(name);
        t->set_data_type(onnx::TensorProto::INT64);
        t->add_dims(static_cast<int64_t>(values.size()));
        for (int64_t v : values) t->add_int64_data(v);
    }

    void constant(const std::string& output, const Tensor& value) {
        auto& n = node("Constant", output + "_node", {}, {output});
        auto* a = n.add_attribute();
        a->set_name("value");
        a->set_type(onnx::AttributeProto::TENSOR);
        fill(*a->mutable_t(), value, true);
    }

    void int64_constant(const std::string& output, std::vector<int64_t> values) {
        auto& n = node("Constant", output + "_node", {}, {output});
        auto* a = n.add_attribute();
        a->set_name("value");
        a->set_type(onnx::AttributeProto::TENSOR);
        auto* t = a->mutable_t();
        t->set_data_type(onnx::TensorProto::INT64);
        t->add_dims(static_cast<int64_t>(values.size()));
        t->set_raw_data(
            std::string(reinterpret_cast<const char*>(values.data()), values.size() * 8));
    }

    void output(const std::string& name) { model_.mutable_graph()->add_output()->set_name(name); }

    onnx::ModelProto& model() { return model_; }
    std::string bytes() const { return model_.SerializeAsString(); }
    Graph import() const { return import_onnx_bytes(bytes(), "test.onnx"); }

private:
    onnx::ModelProto model_;
};

// `model` with `output` as its graph output, imported.
inline Graph imported(OnnxBuilder& model, const std::string& output) {
    model.output(output);
    return model.import();
}

// The float engine's output for one image, checked against the reference on the way.
inline std::vector<float> run_one(const Graph& g, const std::vector<float>& image) {
    Tensor x(std::vector<int64_t>{1, g.input_shape[0], g.input_shape[1], g.input_shape[2]});
    x.data = image;
    InferenceEngine engine(g, 1);
    const float* y = engine.run(x.data.data(), 1);
    const Tensor want = reference_forward(g, x);
    CHECK(relative_max_diff(y, want) < 1e-6);
    return {y, y + want.numel()};
}

} // namespace mps::test
