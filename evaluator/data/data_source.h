#pragma once
// Where a run's images come from (the config's `data` block, `mpsearch eval --data`): the
// Fashion-MNIST idx files of a directory (the default, loaded exactly as dataset.h always has),
// or per split an image folder (image_folder.h), an .npz archive or a pair of .npy files (npy.h),
// each preprocessed into the model's input (preprocess.h). docs/config.md documents the keys,
// docs/semantics.md ("Data") the arithmetic.
//
// Splits of image folders and arrays (what each is used for: dataset.h):
//   test, validation, train  the source given for that split (its images [first, first + count))
//   calibration              `calibration_count` images spread evenly over the calibration source
//                            (image i * M / count of its M images), which is the `calibration`
//                            split if given, else train, else validation: a class-sorted image
//                            folder's first images would all be of one class.
#include "evaluator/data/dataset.h"
#include "evaluator/data/preprocess.h"

#include <map>
#include <optional>
#include <string>

namespace mps {

struct SplitSource {
    std::string path;     // an image folder, an .npz file, or an .npy file of images
    std::string labels;   // with an .npy `path`: the .npy file of labels
    std::string images_key = "images", labels_key = "labels"; // with an .npz: its arrays
    int64_t first = 0;
    std::optional<int64_t> count; // absent: every image from `first` on

    bool operator==(const SplitSource&) const = default;
};

enum class ArrayLayout { automatic, nchw, nhwc };

struct DataSource {
    std::string idx_dir = default_fashion_mnist_dir;
    std::map<Split, SplitSource> splits; // empty: the idx files of idx_dir
    Preprocess preprocess;               // image folders and arrays only
    ArrayLayout layout = ArrayLayout::automatic; // of rank-4 arrays: automatic tells it from
                                                 // which of dimensions 1 and 3 is 1 or 3

    bool is_idx() const { return splits.empty(); }
};

// A warning when image folders or arrays are read with the default normalization (mean 0, std 1
// on pixels / 255): a model trained on normalized images then scores near chance with no error
// (resnet8 on Fashion-MNIST as .npz: 18.79 % instead of 92.66 %). "" when the source is idx or a
// mean or std was declared.
std::string default_normalization_warning(const DataSource& data);

// The source `split` is read from (calibration: see above), or nullptr when none is given.
const SplitSource* split_source(const DataSource& data, Split split);

// The images of `split`, preprocessed. `classes` is the model's number of outputs: a label at or
// above it (or negative) is an error naming the file. Every problem is an mps::Error naming the
// file and the fix: a missing split, a corrupt image, images of different sizes after
// preprocessing, arrays of the wrong rank or dtype, labels that do not match the images.
Dataset load_split(const DataSource& data, Split split, int64_t calibration_count, int64_t classes);

// What the scores depend on, for a run's header (search/archive.h): for idx files exactly the keys
// runs always had (data_{train,t10k}_{images,labels}_sha256); otherwise per given split
// data_<split> (where from: path, arrays, range) and data_<split>_sha256 (the files' contents
// and names), and data_preprocess.
std::map<std::string, std::string> data_fingerprint(const DataSource& data);

// `mpsearch eval --data PATH`: a directory holding idx files, an image folder, or an .npz file
// (its `images` and `labels` arrays), used for both test and validation. mps::Error otherwise.
DataSource detect_data_source(const std::string& path);

} // namespace mps
