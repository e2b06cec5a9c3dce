#pragma once
// Errors as values that carry their own explanation and their kind.
//
// Library code throws mps::Error with a message that names the file or object, the place and the
// fix ("models/x.onnx: node 'conv7' has op type 'LSTM', which is not supported; supported ops:
// ..."). The kind says whose the problem is, which is what the exit code tells a script:
//   input    what the user gave is wrong: a bad file, config, argument or policy (the default,
//            since nearly every check in the library is of its input)
//   failure  the input was fine but running failed: writing an output (disk full, directory not
//            writable), the training diverging, a broken internal invariant (a bug)
// Only search/main.cpp maps kinds to exit codes (search/cli.h); code that adds context to an
// error it caught keeps its kind (Error(context + e.what(), e.kind())).
#include <stdexcept>
#include <string>

namespace mps {

enum class ErrorKind { input, failure };

struct Error : std::runtime_error {
    explicit Error(const std::string& message, ErrorKind kind = ErrorKind::input)
        : std::runtime_error(message), kind_(kind) {}
    ErrorKind kind() const noexcept { return kind_; }

private:
    ErrorKind kind_;
};

// An Error of kind failure: the run went wrong, not its input.
struct Failure : Error {
    explicit Failure(const std::string& message) : Error(message, ErrorKind::failure) {}
};

} // namespace mps
