#include "evaluator/data/image_folder.h"

#include "evaluator/base/error.h"
#include "evaluator/data/image_decode.h"

#include <algorithm>
#include <filesystem>

namespace mps {

namespace fs = std::filesystem;

namespace {

// The names in `dir` that are folders (want_folders) or image files, sorted, hidden ones skipped.
std::vector<std::string> entries(const fs::path& dir, bool want_folders) {
    std::vector<std::string> names;
    std::error_code ec;
    for (const auto& entry : fs::directory_iterator(dir, ec)) {
        const std::string name = entry.path().filename().string();
        if (name.empty() || name[0] == '.') continue;
        if (want_folders ? entry.is_directory(ec) : (entry.is_regular_file(ec) && is_image_file_name(name)))
            names.push_back(name);
    }
    if (ec) throw Error(dir.string() + ": cannot list the folder (" + ec.message() + ")");
    std::sort(names.begin(), names.end());
    return names;
}

} // namespace

ImageFolderListing list_image_folder(const std::string& root) {
    if (!fs::is_directory(root))
        throw Error(root + ": no such folder; an image folder holds one subfolder of images per class");
    ImageFolderListing listing;
    listing.root = root;
    listing.classes = entries(root, true);
    if (listing.classes.empty())
        throw Error(root + ": no class subfolders; an image folder holds one subfolder of .png or "
                    ".jpg images per class (root/<class>/<image>), classes in sorted order");
    if (listing.classes.size() > 256)
        throw Error(root + ": " + std::to_string(listing.classes.size()) +
                    " classes; at most 256 are supported");
    for (size_t c = 0; c < listing.classes.size(); ++c) {
        const fs::path dir = fs::path(root) / listing.classes[c];
        const std::vector<std::string> images = entries(dir, false);
        if (images.empty())
            throw Error(dir.string() + ": class '" + listing.classes[c] + "' (label " +
                        std::to_string(c) + ") has no .png or .jpg image; add its images or "
                        "remove the folder (labels follow the sorted class folders)");
        for (const std::string& image : images)
            listing.samples.push_back({(dir / image).string(), static_cast<int>(c)});
    }
    return listing;
}

} // namespace mps
