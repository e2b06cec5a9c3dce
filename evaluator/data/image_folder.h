#pragma once
// An image folder as torchvision's ImageFolder reads one: one subfolder per class, the classes in
// sorted order (label 0 is the first), the images of each class sorted by name, class after
// class. Files other than .png/.jpg/.jpeg (any case) and hidden entries are skipped, as
// ImageFolder skips files without an image extension.
#include <cstdint>
#include <string>
#include <vector>

namespace mps {

struct ImageFolderListing {
    std::string root;
    std::vector<std::string> classes;  // subfolder names, sorted
    struct Sample {
        std::string path;
        int label = 0;
    };
    std::vector<Sample> samples;       // class by class, sorted within each
};

// Throws mps::Error naming the folder when it is missing, has no class subfolder, or a class has
// no image (ImageFolder refuses that too: its label could never be predicted right).
ImageFolderListing list_image_folder(const std::string& root);

} // namespace mps
