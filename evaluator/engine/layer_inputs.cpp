// Input moments of conv / fully connected layers on the calibration images, and the data source
// that serves them to data-aware quantizers.
#include "evaluator/engine/layer_inputs.h"

#include "evaluator/base/error.h"
#include "evaluator/base/once_map.h"
#include "evaluator/base/ordered_gemm.h"
#include "evaluator/base/sha256.h"
#include "evaluator/engine/inference.h"
#include "evaluator/ir/bit_policy.h"

#include <algorithm>
#include <functional>

namespace mps {

namespace {

constexpr int64_t chunk_patches = 64;

// Sum of x x^T over patches: each chunk of patches as one float32 product (ordered_gemm.h),
// chunks added into double in the order they fill.
class MomentSum {
public:
    explicit MomentSum(int64_t size) : size_(size), sum_(static_cast<size_t>(size * size), 0.0) {}

    void add(const std::vector<float>& patch) {
        chunk_.insert(chunk_.end(), patch.begin(), patch.end());
        if (static_cast<int64_t>(chunk_.size()) == chunk_patches * size_) flush();
    }

    // The mean over every patch added (flushes the last chunk).
    std::vector<double> mean() {
        flush();
        std::vector<double> m = sum_;
        for (double& v : m) v /= static_cast<double>(std::max<int64_t>(1, samples_));
        return m;
    }
    int64_t samples() const { return samples_; }

private:
    void flush() {
        const int64_t n = static_cast<int64_t>(chunk_.size()) / size_;
        if (n == 0) return;
        transposed_.resize(chunk_.size());
        partial_.assign(sum_.size(), 0.0f);
        std::vector<float>& transposed = transposed_;
        for (int64_t p = 0; p < n; ++p)
            for (int64_t i = 0; i < size_; ++i)
                transposed[static_cast<size_t>(i * n + p)] = chunk_[static_cast<size_t>(p * size_ + i)];
        ordered_gemm_accumulate(size_, size_, n, transposed.data(), n, chunk_.data(), size_,
                                partial_.data(), size_);
        for (size_t i = 0; i < sum_.size(); ++i) sum_[i] += partial_[i];
        samples_ += n;
        chunk_.clear();
    }

    int64_t size_, samples_ = 0;
    std::vector<double> sum_;
    std::vector<float> chunk_; // patches x size
    std::vector<float> transposed_, partial_; // scratch, kept to spare allocations
};

// The im2col row of `layer` (a conv) at output position (oh, ow) of group g, from one image's
// input of shape [C, H, W].
void conv_patch(const Node& layer, const std::vector<int64_t>& shape, const float* input,
                int64_t g, int64_t oh, int64_t ow, std::vector<float>& patch) {
    const int64_t channels = shape[0] / layer.groups, height = shape[1], width = shape[2];
    size_t at = 0;
    for (int64_t c = 0; c < channels; ++c)
        for (int64_t i = 0; i < layer.kernel[0]; ++i)
            for (int64_t j = 0; j < layer.kernel[1]; ++j) {
                const int64_t y = oh * layer.stride[0] - layer.pad_begin[0] + i * layer.dilation[0];
                const int64_t x = ow * layer.stride[1] - layer.pad_begin[1] + j * layer.dilation[1];
                const bool inside = y >= 0 && y < height && x >= 0 && x < width;
                patch[at++] = inside ? input[((g * channels + c) * height + y) * width + x] : 0.0f;
            }
}

// Calls visit(image index, its float32 value `value`) for every image, in order.
void for_each_value(const Graph& graph, const std::string& value, const Dataset& images,
                    int64_t batch, const std::function<void(int64_t, const float*)>& visit) {
    if (value == graph.input) {
        for (int64_t i = 0; i < images.count; ++i) visit(i, images.image(i));
        return;
    }
    InferenceEngine engine(truncated_at(graph, value), std::min(batch, images.count));
    const int64_t per_image = engine.num_classes(); // floats of `value` per image
    for (int64_t first = 0; first < images.count; first += engine.batch()) {
        const int64_t n = std::min(engine.batch(), images.count - first);
        const float* out = engine.run(images.image(first), n);
        for (int64_t i = 0; i < n; ++i) visit(first + i, out + i * per_image);
    }
}

} // namespace

LayerInputMoments input_moments(const Graph& folded, const Node& layer, const Dataset& images,
                                int64_t max_patches, int64_t batch) {
    if (!is_quantizable(layer))
        throw Error("input_moments: '" + layer.name + "' is not a conv or fully connected layer");
    if (max_patches < 1 || batch < 1 || images.count < 1)
        throw Error("input_moments: needs at least one image, patch and batch image");
    const std::vector<int64_t>& in = folded.shapes.at(layer.inputs.at(0));
    const std::vector<int64_t>& out = folded.shapes.at(layer.output);
    const bool conv = layer.op == Op::conv;
    LayerInputMoments m;
    m.groups = conv ? layer.groups : 1;
    m.size = conv ? in[0] / layer.groups * layer.kernel[0] * layer.kernel[1] : Tensor::count(in);
    const int64_t positions = conv ? out[1] * out[2] : 1;
    const int64_t wanted = (max_patches + images.count - 1) / images.count; // per image
    const int64_t n = std::clamp<int64_t>(wanted, 1, positions), step = positions / n;
    std::vector<MomentSum> sums(static_cast<size_t>(m.groups), MomentSum(m.size));
    std::vector<float> patch(static_cast<size_t>(m.size));
    for_each_value(folded, layer.inputs.at(0), images, batch, [&](int64_t image, const float* x) {
        if (!conv) {
            std::copy(x, x + m.size, patch.begin());
            sums[0].add(patch);
            return;
        }
        for (int64_t g = 0; g < m.groups; ++g)
            for (int64_t j = 0; j < n; ++j) {
                const int64_t position = image % step + j * step;
                conv_patch(layer, in, x, g, position / out[2], position % out[2], patch);
                sums[static_cast<size_t>(g)].add(patch);
            }
    });
    for (MomentSum& sum : sums) {
        const std::vector<double> mean = sum.mean();
        m.values.insert(m.values.end(), mean.begin(), mean.end());
        m.samples = sum.samples();
    }
    return m;
}

namespace {

// SHA-256 of what the moments depend on: the graph (ops, wiring, attributes, parameters), the
// images and the sampling.
std::string data_fingerprint(const Graph& graph, const Dataset& images) {
    Sha256 h;
    auto text = [&](const std::string& s) { h.update(s + "\n"); };
    auto floats = [&](const std::vector<float>& v) { h.update(v.data(), v.size() * sizeof(float)); };
    text("max_patches " + std::to_string(default_max_patches));
    text(graph.input + " " + graph.output);
    for (const Node& node : graph.nodes) {
        std::string line = node.name + " " + op_name(node.op) + " -> " + node.output + " <-";
        for (const std::string& input : node.inputs) line += " " + input;
        for (int64_t v : {node.kernel[0], node.kernel[1], node.stride[0], node.stride[1],
                          node.pad_begin[0], node.pad_begin[1], node.pad_end[0], node.pad_end[1],
                          node.dilation[0], node.dilation[1], node.groups})
            line += " " + std::to_string(v);
        text(line);
        for (float v : {node.clip_min, node.clip_max, node.alpha, node.beta, node.epsilon})
            h.update(&v, sizeof v);
        for (const Tensor* t : {&node.weight, &node.bias, &node.mean, &node.var}) floats(t->data);
    }
    text(std::to_string(images.count) + " " + std::to_string(images.channels) + "x" +
         std::to_string(images.height) + "x" + std::to_string(images.width));
    floats(images.images);
    return h.hex_digest();
}

} // namespace

struct CalibrationLayerData::Impl {
    Graph graph;
    std::shared_ptr<const Dataset> images;
    std::string cache_dir, fingerprint;
    OnceMap<std::string, std::shared_ptr<const LayerInputMoments>> moments;
};

CalibrationLayerData::CalibrationLayerData(Graph folded, std::shared_ptr<const Dataset> images,
                                           std::string cache_dir)
    : impl_(std::make_unique<Impl>()) {
    if (!images) throw Error("CalibrationLayerData: no calibration images given");
    impl_->fingerprint = data_fingerprint(folded, *images);
    impl_->graph = std::move(folded);
    impl_->images = std::move(images);
    impl_->cache_dir = std::move(cache_dir);
}

CalibrationLayerData::~CalibrationLayerData() = default;
const Graph& CalibrationLayerData::graph() const { return impl_->graph; }
const std::string& CalibrationLayerData::fingerprint() const { return impl_->fingerprint; }
const std::string& CalibrationLayerData::cache_dir() const { return impl_->cache_dir; }

std::shared_ptr<const LayerInputMoments> CalibrationLayerData::input_moments(
    const std::string& layer) const {
    const Node* node = impl_->graph.find_node(layer);
    if (!node || !is_quantizable(*node))
        throw Error("layer data: '" + layer + "' is not a conv or fully connected layer of the model");
    return impl_->moments.get(layer, [&] {
        return std::make_shared<const LayerInputMoments>(
            mps::input_moments(impl_->graph, *node, *impl_->images));
    });
}

std::shared_ptr<const WeightQuantizer> make_prepared_quantizer(const QuantizerSpec& spec,
                                                               const Graph& folded,
                                                               std::shared_ptr<const Dataset> images,
                                                               const std::string& cache_dir) {
    std::shared_ptr<const WeightQuantizer> quantizer = make_weight_quantizer(spec.name, spec.args);
    if (!quantizer->learns_from_data()) return quantizer;
    return quantizer->with_data(
        std::make_shared<const CalibrationLayerData>(folded, std::move(images), cache_dir));
}

} // namespace mps
