#pragma once
// Errors as values that carry their own explanation.
//
// Library code throws mps::Error with a message that names the file or object, the place and the
// fix ("models/x.onnx: node 'conv7' has op type 'LSTM', which is not supported; supported ops:
// ..."). The CLI catches it at the top, prints the message once and exits with a non-zero code.
#include <stdexcept>
#include <string>

namespace mps {

struct Error : std::runtime_error {
    using std::runtime_error::runtime_error;
};

} // namespace mps
