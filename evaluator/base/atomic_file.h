#pragma once
// Whole-file writes that a reader (or a crash) never sees half done: the bytes go to a temporary
// file in the same directory, are flushed and fsync'd, the temporary is renamed over `path`, and
// the directory is fsync'd so that the rename itself survives a crash.
#include <string>
#include <string_view>

namespace mps {

// Throws mps::Failure naming `path`, the failing step and its reason; the temporary is removed.
void write_file_atomically(const std::string& path, std::string_view bytes);

} // namespace mps
