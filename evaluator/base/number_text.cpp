// Shortest decimal text of a double (number_text.h).
#include "evaluator/base/number_text.h"

namespace mps {

std::string shortest_decimal(double v) {
    // 64 characters hold any double's shortest form (at most 24), so to_chars cannot fail.
    char text[64];
    return std::string(text, std::to_chars(text, text + sizeof text, v).ptr);
}

} // namespace mps
