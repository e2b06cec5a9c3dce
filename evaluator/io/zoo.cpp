#include "evaluator/io/zoo.h"

#include "evaluator/base/error.h"
#include "evaluator/base/seeded_random.h"

#include <cmath>
#include <functional>
#include <map>
#include <random>

namespace mps {

namespace {

// Appends nodes to a graph, tracking the current value and its channel count so each builder
// reads like the architecture's description.
class Builder {
public:
    explicit Builder(uint64_t seed) : rng_(seed) {
        graph_.input = "input";
        graph_.input_shape = {1, 28, 28};
        current_ = "input";
        channels_ = 1;
    }

    // A conv (no bias when `bias` is false); returns its output value.
    std::string conv(const std::string& name, int64_t out_c, int64_t kernel, int64_t stride,
                     int64_t pad, int64_t groups = 1, bool bias = false) {
        Node n = make(name, Op::conv, {current_});
        n.kernel = {kernel, kernel};
        n.stride = {stride, stride};
        n.pad_begin = {pad, pad};
        n.pad_end = {pad, pad};
        n.groups = groups;
        n.weight = kaiming(out_c, channels_ / groups, kernel, kernel);
        if (bias) n.bias = Tensor({out_c}, 0.0f);
        channels_ = out_c;
        return push(std::move(n));
    }

    std::string batch_norm(const std::string& name) {
        Node n = make(name, Op::batch_norm, {current_});
        n.weight = Tensor({channels_}, 1.0f);
        n.bias = Tensor({channels_}, 0.0f);
        n.mean = Tensor({channels_}, 0.0f);
        n.var = Tensor({channels_}, 1.0f);
        return push(std::move(n));
    }

    std::string relu(const std::string& name) { return push(make(name, Op::relu, {current_})); }

    std::string relu6(const std::string& name) {
        Node n = make(name, Op::clip, {current_});
        n.clip_min = 0.0f;
        n.clip_max = 6.0f;
        return push(std::move(n));
    }

    std::string max_pool(const std::string& name, int64_t k) {
        Node n = make(name, Op::max_pool, {current_});
        n.kernel = {k, k};
        n.stride = {k, k};
        return push(std::move(n));
    }

    std::string global_average_pool(const std::string& name) {
        return push(make(name, Op::global_average_pool, {current_}));
    }

    std::string flatten(int64_t features) {
        push(make("flatten", Op::flatten, {current_}));
        channels_ = features;
        return current_;
    }

    std::string fc(const std::string& name, int64_t out) {
        Node n = make(name, Op::fully_connected, {current_});
        n.weight = kaiming(out, channels_, 1, 1);
        n.weight.dims = {out, channels_};
        n.bias = Tensor({out}, 0.0f);
        channels_ = out;
        return push(std::move(n));
    }

    std::string add(const std::string& name, const std::string& a, const std::string& b) {
        return push(make(name, Op::add, {a, b}));
    }

    // Conv + BN (+ ReLU or ReLU6 when `activation` is "relu" / "relu6").
    std::string conv_bn(const std::string& name, int64_t out_c, int64_t kernel, int64_t stride,
                        int64_t pad, int64_t groups, const std::string& activation) {
        conv(name, out_c, kernel, stride, pad, groups);
        batch_norm(name + "_bn");
        if (activation == "relu") relu(name + "_relu");
        if (activation == "relu6") relu6(name + "_relu6");
        return current_;
    }

    void set_current(const std::string& value, int64_t channels) {
        current_ = value;
        channels_ = channels;
    }
    const std::string& current() const { return current_; }
    int64_t channels() const { return channels_; }

    Graph finish() {
        // The last node writes the logits.
        graph_.nodes.back().output = "output";
        graph_.output = "output";
        infer_shapes(graph_);
        return std::move(graph_);
    }

private:
    Node make(const std::string& name, Op op, std::vector<std::string> inputs) {
        Node n;
        n.name = name;
        n.op = op;
        n.inputs = std::move(inputs);
        n.output = name;
        return n;
    }

    std::string push(Node n) {
        current_ = n.output;
        graph_.nodes.push_back(std::move(n));
        return current_;
    }

    Tensor kaiming(int64_t out, int64_t in_per_group, int64_t kh, int64_t kw) {
        Tensor t({out, in_per_group, kh, kw});
        const double bound = std::sqrt(6.0 / static_cast<double>(in_per_group * kh * kw));
        for (float& w : t.data) w = static_cast<float>(random_uniform(rng_, -bound, bound));
        return t;
    }

    std::mt19937_64 rng_;
    Graph graph_;
    std::string current_;
    int64_t channels_;
};

Graph lenet5(uint64_t seed) {
    Builder b(seed);
    b.conv("conv1", 6, 5, 1, 2, 1, true);
    b.relu("conv1_relu");
    b.max_pool("pool1", 2);
    b.conv("conv2", 16, 5, 1, 0, 1, true);
    b.relu("conv2_relu");
    b.max_pool("pool2", 2);
    b.flatten(16 * 5 * 5);
    b.fc("fc1", 120);
    b.relu("fc1_relu");
    b.fc("fc2", 84);
    b.relu("fc2_relu");
    b.fc("fc3", 10);
    return b.finish();
}

Graph vgg_small(uint64_t seed) {
    Builder b(seed);
    b.conv_bn("conv1", 32, 3, 1, 1, 1, "relu");
    b.conv_bn("conv2", 32, 3, 1, 1, 1, "relu");
    b.max_pool("pool1", 2);
    b.conv_bn("conv3", 64, 3, 1, 1, 1, "relu");
    b.conv_bn("conv4", 64, 3, 1, 1, 1, "relu");
    b.max_pool("pool2", 2);
    b.conv_bn("conv5", 128, 3, 1, 1, 1, "relu");
    b.max_pool("pool3", 2);
    b.flatten(128 * 3 * 3);
    b.fc("fc1", 256);
    b.relu("fc1_relu");
    b.fc("fc2", 10);
    return b.finish();
}

// conv3x3+BN+ReLU, conv3x3+BN, [1x1 conv+BN projection], add, ReLU.
void basic_block(Builder& b, const std::string& name, int64_t out_c, int64_t stride) {
    const std::string block_input = b.current();
    const int64_t in_c = b.channels();
    b.conv(name + "_conv1", out_c, 3, stride, 1);
    b.batch_norm(name + "_conv1_bn");
    b.relu(name + "_relu1");
    b.conv(name + "_conv2", out_c, 3, 1, 1);
    const std::string main_path = b.batch_norm(name + "_conv2_bn");
    std::string shortcut = block_input;
    if (stride != 1 || in_c != out_c) {
        b.set_current(block_input, in_c);
        b.conv(name + "_proj", out_c, 1, stride, 0);
        shortcut = b.batch_norm(name + "_proj_bn");
    }
    b.add(name + "_add", main_path, shortcut);
    b.relu(name + "_relu");
}

Graph resnet8(uint64_t seed) {
    Builder b(seed);
    b.conv_bn("conv1", 16, 3, 1, 1, 1, "relu");
    basic_block(b, "block1", 16, 1);
    basic_block(b, "block2", 32, 2);
    basic_block(b, "block3", 64, 2);
    b.global_average_pool("gap");
    b.flatten(64);
    b.fc("fc", 10);
    return b.finish();
}

void separable_block(Builder& b, const std::string& name, int64_t out_c, int64_t stride) {
    const int64_t in_c = b.channels();
    b.conv_bn(name + "_dw", in_c, 3, stride, 1, in_c, "relu6");
    b.conv_bn(name + "_pw", out_c, 1, 1, 0, 1, "relu6");
}

Graph mobilenet_tiny(uint64_t seed) {
    Builder b(seed);
    b.conv_bn("conv1", 16, 3, 1, 1, 1, "relu6");
    separable_block(b, "block1", 32, 2);
    separable_block(b, "block2", 64, 2);
    separable_block(b, "block3", 64, 1);
    separable_block(b, "block4", 128, 1);
    b.global_average_pool("gap");
    b.flatten(128);
    b.fc("fc", 10);
    return b.finish();
}

const std::map<std::string, std::function<Graph(uint64_t)>>& architectures() {
    static const std::map<std::string, std::function<Graph(uint64_t)>> table{
        {"lenet5", lenet5},
        {"vgg_small", vgg_small},
        {"resnet8", resnet8},
        {"mobilenet_tiny", mobilenet_tiny},
    };
    return table;
}

} // namespace

std::vector<std::string> architecture_names() {
    return {"lenet5", "vgg_small", "resnet8", "mobilenet_tiny"};
}

Graph make_architecture(const std::string& name, uint64_t seed) {
    const auto it = architectures().find(name);
    if (it == architectures().end()) {
        std::string known;
        for (const std::string& n : architecture_names()) known += (known.empty() ? "" : ", ") + n;
        throw Error("unknown architecture '" + name + "'; known architectures: " + known);
    }
    return it->second(seed);
}

} // namespace mps
