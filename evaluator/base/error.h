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
//   busy     another process holds what this one needs (a search's run directory): nothing is
//            wrong with the input, retrying after that process ends works
//   interrupted  a signal (SIGINT, SIGTERM) stopped the command at a safe point (Interrupted)
// Only search/main.cpp maps kinds to exit codes (search/cli.h); code that adds context to an
// error it caught keeps its kind (Error(context + e.what(), e.kind())).
#include <stdexcept>
#include <string>

namespace mps {

enum class ErrorKind { input, failure, busy, interrupted };

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

// An Error of kind busy: a resource is held by another process (the message names it).
struct Busy : Error {
    explicit Busy(const std::string& message) : Error(message, ErrorKind::busy) {}
};

// An Error of kind interrupted: `signal_number` stopped the command where nothing was half
// written; the message says how to continue.
struct Interrupted : Error {
    Interrupted(const std::string& message, int signal_number)
        : Error(message, ErrorKind::interrupted), signal_number(signal_number) {}
    int signal_number;
};

} // namespace mps
