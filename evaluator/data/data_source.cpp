#include "evaluator/data/data_source.h"

#include "evaluator/base/error.h"
#include "evaluator/base/sha256.h"
#include "evaluator/data/image_decode.h"
#include "evaluator/data/image_folder.h"
#include "evaluator/data/npy.h"

#include <filesystem>

namespace mps {

namespace fs = std::filesystem;

namespace {

std::string key_of(Split split) { return std::string("data.") + split_name(split); }

std::string shape_text(const FloatImage& image) {
    return std::to_string(image.channels) + "x" + std::to_string(image.height) + "x" +
           std::to_string(image.width);
}

// The images a split takes of a source of `total` images, in order.
std::vector<int64_t> chosen_indices(const SplitSource& source, Split split, int64_t total,
                                    int64_t calibration_count, const std::string& name) {
    const int64_t count = source.count.value_or(total - source.first);
    if (source.first < 0 || count < 0 || source.first + count > total)
        throw Error(name + ": holds " + std::to_string(total) + " images, so images " +
                    std::to_string(source.first) + ".." + std::to_string(source.first + count - 1) +
                    " do not exist; fix first/count of " + key_of(split));
    if (count == 0)
        throw Error(name + ": the " + std::string(split_name(split)) + " split holds no images; "
                    "fix first/count of " + key_of(split) + " or give other data");
    std::vector<int64_t> indices;
    if (split != Split::calibration) {
        for (int64_t i = 0; i < count; ++i) indices.push_back(source.first + i);
        return indices;
    }
    if (calibration_count < 1 || calibration_count > count)
        throw Error(name + ": the calibration source holds " + std::to_string(count) +
                    " images, fewer than the " + std::to_string(calibration_count) +
                    " calibration images asked for; lower data.calibration_images (--calibration)");
    for (int64_t i = 0; i < calibration_count; ++i)
        indices.push_back(source.first + i * count / calibration_count);
    return indices;
}

// Appends preprocessed images to a Dataset, all of one shape.
class DatasetBuilder {
public:
    DatasetBuilder(const Preprocess& p, int64_t reserve) : preprocess_(p), reserve_(reserve) {}

    void add(FloatImage image, int label, const std::string& name) {
        image = preprocess_image(std::move(image), preprocess_, name);
        if (data_.count == 0) {
            data_.channels = image.channels;
            data_.height = image.height;
            data_.width = image.width;
            first_ = name;
            data_.images.reserve(static_cast<size_t>(reserve_ * data_.image_size()));
        } else if (image.channels != data_.channels || image.height != data_.height ||
                   image.width != data_.width) {
            throw Error(name + ": image of " + shape_text(image) + " after preprocessing, but " +
                        first_ + " is " + std::to_string(data_.channels) + "x" +
                        std::to_string(data_.height) + "x" + std::to_string(data_.width) +
                        "; images of different sizes need data.preprocess.resize and crop "
                        "(e.g. resize: 32, crop: 28)");
        }
        data_.images.insert(data_.images.end(), image.values.begin(), image.values.end());
        data_.labels.push_back(static_cast<uint8_t>(label));
        ++data_.count;
    }

    Dataset finish(int num_classes, std::string source) {
        data_.num_classes = num_classes;
        data_.source = std::move(source);
        return std::move(data_);
    }

private:
    const Preprocess& preprocess_;
    int64_t reserve_;
    Dataset data_;
    std::string first_;
};

FloatImage from_bytes(const Image8& image) {
    FloatImage out{image.channels, image.height, image.width, {}};
    out.values.resize(image.pixels.size());
    for (int64_t c = 0; c < image.channels; ++c)
        for (int64_t p = 0; p < image.height * image.width; ++p)
            out.values[static_cast<size_t>(c * image.height * image.width + p)] =
                image.pixels[static_cast<size_t>(p * image.channels + c)] / 255.0f;
    return out;
}

Dataset load_folder(const SplitSource& source, Split split, const Preprocess& p,
                    int64_t calibration_count, int64_t classes) {
    const ImageFolderListing listing = list_image_folder(source.path);
    if (static_cast<int64_t>(listing.classes.size()) > classes)
        throw Error(source.path + ": " + std::to_string(listing.classes.size()) +
                    " class folders, but the model has " + std::to_string(classes) +
                    " outputs; use a model with one output per class, or other data");
    const std::vector<int64_t> indices = chosen_indices(
        source, split, static_cast<int64_t>(listing.samples.size()), calibration_count, source.path);
    DatasetBuilder builder(p, static_cast<int64_t>(indices.size()));
    for (int64_t i : indices) {
        const ImageFolderListing::Sample& s = listing.samples[static_cast<size_t>(i)];
        builder.add(from_bytes(read_image_file(s.path)), s.label, s.path);
    }
    return builder.finish(static_cast<int>(listing.classes.size()), source.path);
}

// The images array's layout: (N, H, W), (N, C, H, W) or (N, H, W, C), C 1 or 3.
struct ArrayGeometry {
    int64_t channels = 1, height = 0, width = 0;
    bool channels_last = false;
};

ArrayGeometry geometry(const NpyArray& a, ArrayLayout layout) {
    const std::string fix = "; images must be uint8 or float32 arrays of shape (N, H, W), "
                            "(N, C, H, W) or (N, H, W, C) with C 1 or 3";
    if (!((a.kind == 'u' && a.item_size == 1) || (a.kind == 'f' && a.item_size == 4)))
        throw Error(a.source + ": images of dtype " + a.dtype_name() + fix +
                    " (array.astype('float32'))");
    if (a.shape.size() == 3) return {1, a.shape[1], a.shape[2], false};
    if (a.shape.size() != 4)
        throw Error(a.source + ": images of shape " + a.shape_text() + " (rank " +
                    std::to_string(a.shape.size()) + ")" + fix);
    const bool first = a.shape[1] == 1 || a.shape[1] == 3, last = a.shape[3] == 1 || a.shape[3] == 3;
    if (layout == ArrayLayout::automatic && first && last)
        throw Error(a.source + ": images of shape " + a.shape_text() + " could be NCHW or NHWC; "
                    "set data.preprocess.layout: nchw or nhwc");
    const bool channels_last = layout == ArrayLayout::nhwc || (layout == ArrayLayout::automatic && last);
    if (!(channels_last ? last : first))
        throw Error(a.source + ": images of shape " + a.shape_text() + " have no channel "
                    "dimension of 1 or 3 " + (layout == ArrayLayout::automatic ? "" : "where data.preprocess.layout says") + fix);
    return channels_last ? ArrayGeometry{a.shape[3], a.shape[1], a.shape[2], true}
                         : ArrayGeometry{a.shape[1], a.shape[2], a.shape[3], false};
}

FloatImage array_image(const NpyArray& a, const ArrayGeometry& g, int64_t index) {
    FloatImage out{g.channels, g.height, g.width, {}};
    const int64_t size = g.channels * g.height * g.width;
    out.values.resize(static_cast<size_t>(size));
    const bool bytes = a.kind == 'u';
    for (int64_t c = 0; c < g.channels; ++c)
        for (int64_t p = 0; p < g.height * g.width; ++p) {
            const int64_t at = index * size + (g.channels_last ? p * g.channels + c : c * g.height * g.width + p);
            out.values[static_cast<size_t>(c * g.height * g.width + p)] =
                bytes ? a.data[static_cast<size_t>(at)] / 255.0f : static_cast<float>(a.real(at));
        }
    return out;
}

void check_labels(const NpyArray& labels, const NpyArray& images, int64_t classes) {
    if (labels.kind == 'f' || labels.shape.size() != 1)
        throw Error(labels.source + ": labels of dtype " + labels.dtype_name() + " and shape " +
                    labels.shape_text() + "; labels must be a 1-D integer array (array.astype('int64'))");
    if (labels.shape[0] != images.shape[0])
        throw Error(labels.source + ": " + std::to_string(labels.shape[0]) + " labels for the " +
                    std::to_string(images.shape[0]) + " images of " + images.source +
                    "; give one label per image");
    for (int64_t i = 0; i < labels.count(); ++i) {
        const int64_t label = labels.integer(i);
        if (label < 0 || label >= classes)
            throw Error(labels.source + ": label " + std::to_string(label) + " of image " +
                        std::to_string(i) + " is outside 0.." + std::to_string(classes - 1) +
                        ", the model's " + std::to_string(classes) + " classes; fix the labels or use a model with more outputs");
    }
}

std::pair<NpyArray, NpyArray> read_arrays(const SplitSource& source) {
    if (!source.path.ends_with(".npz")) {
        if (source.labels.empty())
            throw Error(source.path + ": an .npy file of images needs its labels file too; "
                        "give the split as {images: x.npy, labels: y.npy}");
        return {read_npy(source.path), read_npy(source.labels)};
    }
    std::map<std::string, NpyArray> arrays = read_npz(source.path);
    std::string names;
    for (const auto& [name, array] : arrays) names += (names.empty() ? "" : ", ") + name;
    for (const std::string& key : {source.images_key, source.labels_key})
        if (!arrays.count(key))
            throw Error(source.path + ": no array '" + key + "' (it holds " +
                        (names.empty() ? std::string("none") : names) +
                        "); name the arrays with the split's images and labels keys");
    return {std::move(arrays[source.images_key]), std::move(arrays[source.labels_key])};
}

Dataset load_arrays(const SplitSource& source, Split split, const DataSource& data,
                    int64_t calibration_count, int64_t classes) {
    const auto [images, labels] = read_arrays(source);
    const ArrayGeometry g = geometry(images, data.layout);
    check_labels(labels, images, classes);
    const std::vector<int64_t> indices =
        chosen_indices(source, split, images.shape[0], calibration_count, images.source);
    DatasetBuilder builder(data.preprocess, static_cast<int64_t>(indices.size()));
    for (int64_t i : indices)
        builder.add(array_image(images, g, i), static_cast<int>(labels.integer(i)),
                    images.source + "[" + std::to_string(i) + "]");
    return builder.finish(static_cast<int>(classes), images.source + " and " + labels.source);
}

} // namespace

const SplitSource* split_source(const DataSource& data, Split split) {
    const std::vector<Split> order = split == Split::calibration
        ? std::vector<Split>{Split::calibration, Split::train, Split::validation}
        : std::vector<Split>{split};
    for (Split s : order)
        if (auto it = data.splits.find(s); it != data.splits.end()) return &it->second;
    return nullptr;
}

Dataset load_split(const DataSource& data, Split split, int64_t calibration_count, int64_t classes) {
    if (data.is_idx()) return load_fashion_mnist(data.idx_dir, split, calibration_count);
    const SplitSource* source = split_source(data, split);
    if (!source)
        throw Error(std::string("no ") + split_name(split) + " images: the data block gives " +
                    "no " + key_of(split) + (split == Split::calibration ? " (nor train or validation)" : "") +
                    "; add " + key_of(split) + ": <image folder or .npz file>");
    if (classes > 256)
        throw Error("the model has " + std::to_string(classes) + " outputs; at most 256 classes are supported");
    if (!fs::exists(source->path))
        throw Error(source->path + ": no such file or folder; fix " + key_of(split) +
                    " (an image folder, an .npz file, or an .npy file with its labels)");
    if (fs::is_directory(source->path))
        return load_folder(*source, split, data.preprocess, calibration_count, classes);
    return load_arrays(*source, split, data, calibration_count, classes);
}

namespace {

// The contents a source reads, as one hash: every file's name (relative to the folder) and SHA-256.
std::string source_sha256(const SplitSource& source) {
    Sha256 hash;
    const auto add = [&hash](const std::string& name, const std::string& path) {
        hash.update(name + "\n" + sha256_file(path) + "\n");
    };
    if (fs::is_directory(source.path)) {
        for (const ImageFolderListing::Sample& s : list_image_folder(source.path).samples)
            add(fs::relative(s.path, source.path).string(), s.path);
    } else {
        add(fs::path(source.path).filename().string(), source.path);
        if (!source.labels.empty()) add(fs::path(source.labels).filename().string(), source.labels);
    }
    return hash.hex_digest();
}

std::string describe(const SplitSource& s) {
    std::string text = s.path;
    if (!s.labels.empty()) text += " labels " + s.labels;
    if (s.path.ends_with(".npz")) text += " arrays " + s.images_key + "," + s.labels_key;
    text += " first " + std::to_string(s.first);
    if (s.count) text += " count " + std::to_string(*s.count);
    return text;
}

std::string numbers(const std::vector<float>& values) {
    std::string text;
    for (float v : values) text += (text.empty() ? "" : ",") + std::to_string(v);
    return text;
}

std::string describe(const Preprocess& p, ArrayLayout layout) {
    return "channels " + std::to_string(p.channels) + " resize " + std::to_string(p.resize) + " " +
           std::to_string(p.resize_height) + "x" + std::to_string(p.resize_width) + " crop " +
           std::to_string(p.crop_height) + "x" + std::to_string(p.crop_width) + " mean " +
           numbers(p.mean) + " std " + numbers(p.std) + (p.bgr ? " bgr" : " rgb") + " layout " +
           std::to_string(static_cast<int>(layout));
}

} // namespace

std::map<std::string, std::string> data_fingerprint(const DataSource& data) {
    std::map<std::string, std::string> keys;
    if (data.is_idx()) {
        for (const std::string prefix : {"train", "t10k"}) {
            const std::vector<std::string> files = fashion_mnist_files(data.idx_dir, prefix);
            keys["data_" + prefix + "_images_sha256"] = sha256_file(files[0]);
            keys["data_" + prefix + "_labels_sha256"] = sha256_file(files[1]);
        }
        return keys;
    }
    for (const auto& [split, source] : data.splits) {
        keys[std::string("data_") + split_name(split)] = describe(source);
        keys[std::string("data_") + split_name(split) + "_sha256"] = source_sha256(source);
    }
    keys["data_preprocess"] = describe(data.preprocess, data.layout);
    return keys;
}

DataSource detect_data_source(const std::string& path) {
    DataSource data;
    if (fs::is_directory(path)) {
        const bool idx = fs::exists(fs::path(path) / "t10k-images-idx3-ubyte.gz") ||
                         fs::exists(fs::path(path) / "t10k-images-idx3-ubyte") ||
                         fs::exists(fs::path(path) / "train-images-idx3-ubyte.gz") ||
                         fs::exists(fs::path(path) / "train-images-idx3-ubyte");
        if (idx) {
            data.idx_dir = path;
            return data;
        }
        bool folders = false;
        std::error_code ec;
        for (const auto& entry : fs::directory_iterator(path, ec))
            folders = folders || (entry.is_directory(ec) && entry.path().filename().string()[0] != '.');
        if (!folders)
            throw Error(path + ": no t10k-images-idx3-ubyte[.gz] here and no class subfolders; "
                        "point --data at a folder of Fashion-MNIST idx files (default " +
                        std::string(default_fashion_mnist_dir) + "), an image folder (one "
                        "subfolder per class) or an .npz file");
    } else if (!(fs::is_regular_file(path) && path.ends_with(".npz"))) {
        throw Error(path + ": " + (fs::exists(path) ? "not" : "no such file or folder; expected") +
                    " a folder of idx files, an image folder (one subfolder per class) or an "
                    ".npz file with arrays 'images' and 'labels'; for anything else use --data-config");
    }
    data.splits[Split::test] = SplitSource{path};
    data.splits[Split::validation] = SplitSource{path};
    return data;
}

std::string default_normalization_warning(const DataSource& data) {
    const Preprocess defaults;
    if (data.is_idx() || data.preprocess.mean != defaults.mean ||
        data.preprocess.std != defaults.std)
        return "";
    return "warning: the images are normalized with mean 0 and std 1 (pixels / 255), the "
           "default; if the model was trained on normalized images, declare its mean and std "
           "(data.preprocess.mean / std, docs/config.md) or its scores will be wrong";
}

} // namespace mps
