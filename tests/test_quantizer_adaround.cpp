// adaround: its loss and gradient against a naive objective, the input moments against a naive
// im2col, never worse than round-to-nearest, the same codes whatever the threads and blocks, the
// learned codes kept on disk and read back, and the integer form equal to the fake one.
#include "evaluator/engine/evaluator.h"
#include "evaluator/engine/layer_inputs.h"

#include "evaluator/base/error.h"
#include "evaluator/ir/bit_policy.h"
#include "evaluator/quant/adaround.h"
#include "evaluator/quant/quantizer.h"
#include "evaluator/ref/reference.h"
#include "tests/graph_builders.h"
#include "tests/temp_dir.h"

#include <doctest/doctest.h>
#include <tbb/task_arena.h>

#include <atomic>
#include <cmath>
#include <filesystem>

using namespace mps;

namespace {

// conv 3x3 (16), grouped conv 3x3 (24, 2 groups), 1x1 conv (8), fully connected (10).
Graph small_conv_graph() {
    test::GraphBuilder b({3, 8, 8}, 5);
    std::string x = b.relu(b.conv(b.input(), 16));
    test::ConvSpec grouped;
    grouped.groups = 2;
    x = b.relu(b.conv(x, 24, grouped));
    test::ConvSpec pointwise;
    pointwise.kernel = {1, 1};
    pointwise.pad_begin = pointwise.pad_end = {0, 0};
    x = b.relu(b.conv(x, 8, pointwise));
    return b.finish(b.fully_connected(b.flatten(b.global_average_pool(x)), 10));
}

std::shared_ptr<const Dataset> images_for(const Graph& graph, int64_t n = 24) {
    return std::make_shared<const Dataset>(test::random_images(graph.input_shape, n, 11, -1.0f, 2.0f));
}

// A symmetric positive definite size x size matrix: A A^T / size + 0.1 I.
std::vector<double> random_moments(int64_t size, uint64_t seed) {
    test::Rng rng(seed);
    std::vector<double> a(static_cast<size_t>(size * size)), h(a.size(), 0.0);
    for (double& v : a) v = rng.uniform(-1.0f, 1.0f);
    for (int64_t i = 0; i < size; ++i)
        for (int64_t j = 0; j < size; ++j) {
            double sum = i == j ? 0.1 : 0.0;
            for (int64_t k = 0; k < size; ++k) sum += a[i * size + k] * a[j * size + k] / size;
            h[static_cast<size_t>(i * size + j)] = sum;
        }
    return h;
}

// The objective of one kernel as docs/quantizers.md writes it, in double.
double naive_objective(std::span<const float> w, float s, int bits, std::span<const double> h,
                       std::span<const double> v, double beta, double lambda) {
    const int64_t n = static_cast<int64_t>(w.size());
    const double qmax = (1 << (bits - 1)) - 1;
    double trace = 0.0;
    for (int64_t i = 0; i < n; ++i) trace += h[i * n + i];
    std::vector<double> d(w.size());
    double regulariser = 0.0;
    for (int64_t i = 0; i < n; ++i) {
        const double x = static_cast<double>(w[i] / s), f = std::floor(x);
        if (f < -qmax || f >= qmax) {
            d[i] = x - std::clamp(f, -qmax, qmax);
            continue;
        }
        const double sigmoid = 1.0 / (1.0 + std::exp(-v[i]));
        const double soft = std::clamp(sigmoid * 1.2 - 0.1, 0.0, 1.0);
        d[i] = x - (f + soft);
        regulariser += 1.0 - std::pow(std::fabs(2.0 * soft - 1.0), beta);
    }
    double recon = 0.0;
    for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) recon += d[i] * h[i * n + j] * d[j];
    return recon / (trace / n) + lambda * regulariser;
}

// sum (w - w~)^T H (w - w~) over kernels sharing H, in double.
double output_error(std::span<const float> w, std::span<const float> wq, std::span<const double> h) {
    const size_t n = static_cast<size_t>(std::sqrt(static_cast<double>(h.size())));
    double error = 0.0;
    for (size_t k = 0; k < w.size() / n; ++k)
        for (size_t i = 0; i < n; ++i)
            for (size_t j = 0; j < n; ++j)
                error += (w[k * n + i] - wq[k * n + i]) * h[i * n + j] * (w[k * n + j] - wq[k * n + j]);
    return error;
}

// A data source with given moments, counting the requests for them.
class FixedLayerData final : public LayerDataSource {
public:
    FixedLayerData(Graph graph, std::map<std::string, LayerInputMoments> moments, std::string dir = "")
        : graph_(std::move(graph)), dir_(std::move(dir)) {
        for (auto& [name, m] : moments)
            moments_[name] = std::make_shared<const LayerInputMoments>(std::move(m));
    }
    const Graph& graph() const override { return graph_; }
    std::shared_ptr<const LayerInputMoments> input_moments(const std::string& layer) const override {
        ++requests;
        return moments_.at(layer);
    }
    const std::string& fingerprint() const override { return fingerprint_; }
    const std::string& cache_dir() const override { return dir_; }
    mutable std::atomic<int> requests{0};

private:
    Graph graph_;
    std::map<std::string, std::shared_ptr<const LayerInputMoments>> moments_;
    std::string fingerprint_ = "fixed", dir_;
};

LayerInputMoments identity_moments(const Node& layer) {
    LayerInputMoments m;
    m.groups = layer.op == Op::conv ? layer.groups : 1;
    m.size = layer.weight.numel() / layer.weight.dims[0];
    m.values.assign(static_cast<size_t>(m.groups * m.size * m.size), 0.0);
    for (int64_t g = 0; g < m.groups; ++g)
        for (int64_t i = 0; i < m.size; ++i) m.values[static_cast<size_t>((g * m.size + i) * m.size + i)] = 1.0;
    return m;
}

std::span<const float> kernel(const Node& layer, int64_t k) {
    const size_t size = static_cast<size_t>(layer.weight.numel() / layer.weight.dims[0]);
    return std::span<const float>(layer.weight.data).subspan(static_cast<size_t>(k) * size, size);
}

std::vector<float> dequantized(const WeightQuantizer& q, std::span<const float> w, int bits) {
    std::vector<float> out(w.size());
    q.quantize_kernel(w, bits, out);
    return out;
}

} // namespace

TEST_CASE("adaround's loss is the naive objective and its gradient matches finite differences") {
    test::Rng rng(3);
    const int64_t kernels = 3, size = 7;
    std::vector<float> w(kernels * size), scales;
    for (float& v : w) v = rng.uniform(-1.0f, 1.0f);
    for (int64_t k = 0; k < kernels; ++k) scales.push_back(uniform_scale(std::span(w).subspan(k * size, size), 3));
    const std::vector<double> h = random_moments(size, 4);
    const AdaRoundProblem problem(w, size, scales, 3, h);
    std::vector<float> v(w.size());
    for (float& x : v) x = rng.uniform(-2.0f, 2.0f); // inside the rectified sigmoid's slope
    for (const auto& [beta, lambda] : {std::pair(20.0f, 0.0f), std::pair(6.0f, 0.05f), std::pair(2.0f, 0.5f)}) {
        INFO("beta ", beta, " lambda ", lambda);
        std::vector<float> gradient(v.size());
        const std::vector<double> loss = problem.loss_and_gradient(v, beta, lambda, gradient);
        for (int64_t k = 0; k < kernels; ++k) {
            const auto wk = std::span<const float>(w).subspan(k * size, size);
            std::vector<double> vk(v.begin() + k * size, v.begin() + (k + 1) * size);
            const double expected = naive_objective(wk, scales[k], 3, h, vk, beta, lambda);
            CHECK(loss[k] == doctest::Approx(expected).epsilon(1e-5));
            for (int64_t i = 0; i < size; ++i) {
                const double step = 1e-4;
                std::vector<double> up = vk, down = vk;
                up[i] += step;
                down[i] -= step;
                const double numeric = (naive_objective(wk, scales[k], 3, h, up, beta, lambda) -
                                        naive_objective(wk, scales[k], 3, h, down, beta, lambda)) /
                                       (2 * step);
                INFO("kernel ", k, " weight ", i);
                CHECK(gradient[k * size + i] == doctest::Approx(numeric).epsilon(2e-3).scale(1e-3));
            }
        }
    }
    // max|w| sits on the grid's end: fixed, no gradient
    const auto first = std::span<const float>(w).subspan(0, size);
    const auto largest = std::max_element(first.begin(), first.end(), [](float a, float b) { return std::fabs(a) < std::fabs(b); });
    std::vector<float> gradient(v.size());
    problem.loss_and_gradient(v, 2.0f, 0.5f, gradient);
    CHECK(gradient[static_cast<size_t>(largest - first.begin())] == 0.0f);
}

TEST_CASE("input moments equal a naive im2col over every position") {
    const Graph graph = small_conv_graph();
    const auto images = images_for(graph, 6);
    Tensor batch({images->count, 3, 8, 8});
    batch.data = images->images;
    for (const Node* layer : quantizable_layers(graph)) {
        INFO(layer->name);
        const LayerInputMoments m = input_moments(graph, *layer, *images, 1000);
        const std::string& value = layer->inputs[0];
        const Tensor x = value == graph.input ? batch : reference_forward(truncated_at(graph, value), batch);
        const std::vector<int64_t>& in = graph.shapes.at(value);
        const bool conv = layer->op == Op::conv;
        const int64_t groups = conv ? layer->groups : 1, per_image = Tensor::count(in);
        const int64_t channels = conv ? in[0] / groups : per_image;
        const int64_t kh = conv ? layer->kernel[0] : 1, kw = conv ? layer->kernel[1] : 1;
        const int64_t oh = conv ? graph.shapes.at(layer->output)[1] : 1;
        const int64_t ow = conv ? graph.shapes.at(layer->output)[2] : 1;
        const int64_t size = channels * kh * kw;
        REQUIRE(m.size == size);
        REQUIRE(m.groups == groups);
        CHECK(m.samples == images->count * oh * ow);
        std::vector<double> expected(static_cast<size_t>(groups * size * size), 0.0);
        for (int64_t n = 0; n < images->count; ++n)
            for (int64_t g = 0; g < groups; ++g)
                for (int64_t p = 0; p < oh * ow; ++p) {
                    std::vector<double> patch;
                    for (int64_t c = 0; c < channels; ++c)
                        for (int64_t i = 0; i < kh; ++i)
                            for (int64_t j = 0; j < kw; ++j) {
                                if (!conv) { patch.push_back(x.data[n * per_image + c]); continue; }
                                const int64_t y = p / ow * layer->stride[0] - layer->pad_begin[0] + i;
                                const int64_t xx = p % ow * layer->stride[1] - layer->pad_begin[1] + j;
                                const bool inside = y >= 0 && y < in[1] && xx >= 0 && xx < in[2];
                                patch.push_back(inside ? x.data[n * per_image + ((g * channels + c) * in[1] + y) * in[2] + xx] : 0.0);
                            }
                    for (int64_t i = 0; i < size; ++i)
                        for (int64_t j = 0; j < size; ++j)
                            expected[(g * size + i) * size + j] += patch[i] * patch[j] / (images->count * oh * ow);
                }
        double largest = 0.0;
        for (double v : expected) largest = std::max(largest, std::fabs(v));
        for (size_t i = 0; i < expected.size(); ++i)
            REQUIRE(m.values[i] == doctest::Approx(expected[i]).scale(largest).epsilon(1e-5));
    }
}

TEST_CASE("with H = identity adaround's weight error is never above round-to-nearest's") {
    const Graph graph = small_conv_graph();
    std::map<std::string, LayerInputMoments> moments;
    for (const Node* layer : quantizable_layers(graph)) moments[layer->name] = identity_moments(*layer);
    const auto nearest = make_weight_quantizer("mse");
    const auto adaround = make_weight_quantizer("adaround", {{"scale", "mse"}})->with_data(
        std::make_shared<const FixedLayerData>(graph, moments));
    for (const Node* layer : quantizable_layers(graph))
        for (int bits = 2; bits <= 4; ++bits)
            for (int64_t k = 0; k < layer->weight.dims[0]; ++k) {
                const auto w = kernel(*layer, k);
                const auto ours = dequantized(*adaround, w, bits), theirs = dequantized(*nearest, w, bits);
                double ours_error = 0.0, theirs_error = 0.0;
                for (size_t i = 0; i < w.size(); ++i) {
                    ours_error += (w[i] - ours[i]) * (w[i] - ours[i]);
                    theirs_error += (w[i] - theirs[i]) * (w[i] - theirs[i]);
                }
                INFO(layer->name, " kernel ", k, " at ", bits, " bits");
                CHECK(ours_error <= theirs_error * (1 + 1e-6));
            }
}

TEST_CASE("with the calibration H adaround's output error is below round-to-nearest's for every kernel") {
    const Graph graph = small_conv_graph();
    const CalibrationLayerData data(graph, images_for(graph, 32), "");
    const auto nearest = make_weight_quantizer("uniform"); // scale: max, the default
    const auto adaround = make_weight_quantizer("adaround")->with_data(
        std::make_shared<const CalibrationLayerData>(graph, images_for(graph, 32), ""));
    for (const Node* layer : quantizable_layers(graph)) {
        const auto m = data.input_moments(layer->name);
        const int64_t per_group = layer->weight.dims[0] / m->groups;
        for (int bits = 2; bits <= 4; ++bits) {
            double ours_total = 0.0, theirs_total = 0.0;
            for (int64_t k = 0; k < layer->weight.dims[0]; ++k) {
                const auto w = kernel(*layer, k);
                const std::span<const double> h(m->group(k / per_group), static_cast<size_t>(m->size * m->size));
                const double ours = output_error(w, dequantized(*adaround, w, bits), h);
                const double theirs = output_error(w, dequantized(*nearest, w, bits), h);
                INFO(layer->name, " kernel ", k, " at ", bits, " bits: ", ours, " vs ", theirs);
                CHECK(ours <= theirs * (1 + 1e-6));
                ours_total += ours;
                theirs_total += theirs;
            }
            INFO(layer->name, " at ", bits, " bits: ", ours_total, " vs ", theirs_total);
            CHECK(ours_total < 0.9 * theirs_total); // learned rounding pays off on the layer
        }
    }
}

TEST_CASE("adaround learns the same codes with 1 and 2 threads and in any block of kernels") {
    test::Rng rng(8);
    const int64_t kernels = 40, size = 12; // three blocks of 16 kernels
    std::vector<float> w(kernels * size), scales;
    for (float& v : w) v = rng.uniform(-1.0f, 1.0f);
    for (int64_t k = 0; k < kernels; ++k) scales.push_back(uniform_scale(std::span(w).subspan(k * size, size), 3));
    const std::vector<double> h = random_moments(size, 9);
    AdaRoundOptions options;
    options.iterations = 200;
    auto codes_with = [&](int threads) {
        tbb::task_arena arena(threads);
        return arena.execute([&] { return adaround_codes(w, size, scales, 3, h, options); });
    };
    const std::vector<int32_t> one = codes_with(1), two = codes_with(2);
    CHECK(one == two);
    // kernels 5..9 alone learn what they learned among the 40
    const std::vector<int32_t> alone = adaround_codes(std::span(w).subspan(5 * size, 5 * size), size,
                                                      std::span(scales).subspan(5, 5), 3, h, options);
    CHECK(alone == std::vector<int32_t>(one.begin() + 5 * size, one.begin() + 10 * size));
    // and the learned rounding differs from the nearest somewhere (the test would see a no-op)
    const AdaRoundProblem problem(w, size, scales, 3, h);
    CHECK(one != problem.codes(problem.initial_v()));
}

TEST_CASE("adaround keeps its codes on disk and a second quantizer reads them back") {
    const Graph graph = small_conv_graph();
    test::TempDir dir;
    std::map<std::string, LayerInputMoments> moments;
    for (const Node* layer : quantizable_layers(graph)) {
        LayerInputMoments m = identity_moments(*layer);
        for (size_t i = 0; i < m.values.size(); ++i) m.values[i] += 0.3 * static_cast<double>(i % 3); // not diagonal
        for (int64_t g = 0; g < m.groups; ++g) // symmetric again
            for (int64_t i = 0; i < m.size; ++i)
                for (int64_t j = 0; j < i; ++j)
                    m.values[(g * m.size + i) * m.size + j] = m.values[(g * m.size + j) * m.size + i];
        moments[layer->name] = m;
    }
    const auto first_data = std::make_shared<const FixedLayerData>(graph, moments, dir.path().string());
    const auto second_data = std::make_shared<const FixedLayerData>(graph, moments, dir.path().string());
    const auto first = make_weight_quantizer("adaround")->with_data(first_data);
    const auto second = make_weight_quantizer("adaround")->with_data(second_data);
    const Node& layer = *quantizable_layers(graph)[1];
    std::vector<int> bits(static_cast<size_t>(layer.weight.dims[0]), 3);
    bits[0] = 4;
    const Tensor learned = quantize_weights(*first, layer.weight, bits);
    CHECK(first_data->requests == 2); // 3 and 4 bits
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 2);
    const Tensor read = quantize_weights(*second, layer.weight, bits);
    CHECK(second_data->requests == 0); // from the files, not learned again
    CHECK(read.data == learned.data);
    // other arguments are another recipe: learned again, in its own file
    const auto other = make_weight_quantizer("adaround", {{"iterations", "50"}})->with_data(second_data);
    quantize_weights(*other, layer.weight, bits);
    CHECK(second_data->requests == 2);
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path()), {}) == 4);
}

TEST_CASE("adaround's integer form is its fake form, and it runs on the integer path") {
    const Graph graph = small_conv_graph();
    for (const char* scale : {"max", "mse"}) {
        const QuantizerSpec spec{"adaround", {{"iterations", "100"}, {"scale", scale}}};
        const auto adaround = make_prepared_quantizer(spec, graph, images_for(graph), "");
        const auto unbound = make_weight_quantizer(spec.name, spec.args);
        const auto nearest = make_weight_quantizer(scale == std::string("max") ? "uniform" : "mse");
        bool learned_differs = false;
        for (const Node* layer : quantizable_layers(graph))
            for (int bits : {1, 2, 3, 4, 5, 8, 16})
                for (int64_t k = 0; k < layer->weight.dims[0]; ++k) {
                    const auto w = kernel(*layer, k);
                    const WeightQuantizer::KernelCodes codes = adaround->kernel_codes(w, bits);
                    std::vector<float> from_codes(w.size());
                    dequantize_codes(codes, from_codes);
                    CHECK(from_codes == dequantized(*adaround, w, bits));
                    const int qmax = bits == 1 ? 1 : uniform_qmax(bits);
                    for (int32_t c : codes.codes) CHECK(std::abs(c) <= qmax);
                    // the scale is the grid's; 1 and 16 bits and the unbound quantizer round to nearest
                    const WeightQuantizer::KernelCodes grid = nearest->kernel_codes(w, bits);
                    CHECK(codes.scale == grid.scale);
                    if (bits == 1 || bits == 16) CHECK(codes.codes == grid.codes);
                    CHECK(unbound->kernel_codes(w, bits).codes == grid.codes);
                    learned_differs |= codes.codes != grid.codes;
                }
        CHECK(learned_differs);
    }

    EvaluatorOptions options;
    options.weight_quantizer = {"adaround", {{"iterations", "100"}}};
    options.batch = 16;
    options.incremental_cache_bytes = 0;
    const auto images = images_for(graph, 40);
    EvaluationData data{*images, *images, *images};
    Evaluator evaluator(graph, "", data, options);
    for (const std::string& line : evaluator.path_decisions(BitPolicy::uniform(graph, 4, 8)))
        CHECK(line.find("integer") != std::string::npos);
}

TEST_CASE("adaround rejects bad arguments with the accepted ones") {
    CHECK_THROWS_WITH_AS(make_weight_quantizer("adaround", {{"scale", "min"}}),
                         doctest::Contains("must be mse"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("adaround", {{"iterations", "0"}}),
                         doctest::Contains("iterations"), Error);
    CHECK_THROWS_WITH_AS(make_weight_quantizer("adaround", {{"steps", "5"}}),
                         doctest::Contains("accepted arguments: iterations, scale, lambda, learning_rate"), Error);
    CHECK(make_weight_quantizer("adaround")->args().at("scale") == "max");
}
