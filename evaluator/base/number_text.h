#pragma once
// Numbers as text, both ways: the one rule every reader (run config, policy files, policy
// parameters, quantizer arguments) and every writer (policy.yaml, pareto.csv, report.md, the
// gnuplot scripts, messages) of the program follows.
//
// parse_number<T>(text), T an integer type or double: the whole of `text` as a T, or nullopt.
//   Accepted: an optional single sign, '+' (YAML allows it) or '-' (signed types and double
//   only), then what std::from_chars reads in the "C" locale: decimal digits for an integer
//   ("42", "007"); for a double a decimal with an optional fraction and exponent ("0.5", ".5",
//   "2.", "1e-06", "1E6").
//   Rejected: empty text; white space anywhere (callers that allow it trim first); a second sign
//   ("+-2", "--2", "++2"); anything left over ("4x", "1.5" or "1e6" as an integer); hexadecimal;
//   a value outside T's range ("300" as int8_t, "1e400"); for a double anything not finite
//   ("inf", "nan").
//
// shortest_decimal(v): the shortest decimal text that parse_number<double> (and strtod) reads
// back as exactly `v`, as std::to_chars writes it: "0.5", "1e-06", "16", "0.1", "12000"
// (fixed or exponent form, whichever is shorter; fixed on a tie); "inf", "-inf", "nan" when v is
// not finite.
#include <charconv>
#include <cmath>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>

namespace mps {

template <typename T>
std::optional<T> parse_number(std::string_view text) {
    static_assert(std::is_same_v<T, double> || (std::is_integral_v<T> && !std::is_same_v<T, bool>),
                  "parse_number reads integers and doubles");
    const char* begin = text.data();
    const char* end = text.data() + text.size();
    if (begin != end && *begin == '+') ++begin; // from_chars itself takes only '-'
    if (begin == end || *begin == '+' || (*begin == '-' && begin != text.data())) return std::nullopt;
    T value{};
    const auto [stop, error] = std::from_chars(begin, end, value);
    if (error != std::errc() || stop != end) return std::nullopt;
    if constexpr (std::is_floating_point_v<T>)
        if (!std::isfinite(value)) return std::nullopt;
    return value;
}

std::string shortest_decimal(double v);

} // namespace mps
