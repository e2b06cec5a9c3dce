// parse_number and shortest_decimal (evaluator/base/number_text.h): what the one number parser
// accepts and rejects, and that the one formatter prints the shortest text that reads back.
#include "evaluator/base/number_text.h"

#include <doctest/doctest.h>

#include <cstdint>
#include <limits>
#include <string>

using namespace mps;

TEST_CASE("number_text: parse_number reads an optional single sign and the whole text") {
    CHECK(parse_number<int64_t>("42") == 42);
    CHECK(parse_number<int64_t>("+2") == 2); // YAML allows the '+'
    CHECK(parse_number<int64_t>("-2") == -2);
    CHECK(parse_number<int64_t>("007") == 7);
    CHECK(parse_number<int>("-0") == 0);
    CHECK(parse_number<uint64_t>("+18446744073709551615") == std::numeric_limits<uint64_t>::max());

    for (const char* text : {"", "+", "-", "+-2", "-+2", "--2", "++2", " 2", "2 ", "4x", "1.5",
                             "1e6", "0x10", "two"}) {
        CAPTURE(text);
        CHECK_FALSE(parse_number<int64_t>(text).has_value());
    }
    CHECK_FALSE(parse_number<uint64_t>("-1").has_value()); // no sign change for unsigned types
    CHECK_FALSE(parse_number<uint64_t>("-0").has_value());
    // Range: one past the type's limits is rejected, not wrapped or clamped.
    CHECK(parse_number<int8_t>("127") == 127);
    CHECK_FALSE(parse_number<int8_t>("128").has_value());
    CHECK(parse_number<int>("-2147483648") == std::numeric_limits<int>::min());
    CHECK_FALSE(parse_number<int>("2147483648").has_value());
    CHECK_FALSE(parse_number<int64_t>("99999999999999999999").has_value());
}

TEST_CASE("number_text: parse_number<double> reads decimals and rejects what is not finite") {
    CHECK(parse_number<double>("0.5") == 0.5);
    CHECK(parse_number<double>("+0.5") == 0.5);
    CHECK(parse_number<double>("-3.5") == -3.5);
    CHECK(parse_number<double>(".5") == 0.5);
    CHECK(parse_number<double>("2.") == 2.0);
    CHECK(parse_number<double>("1e-06") == 1e-6);
    CHECK(parse_number<double>("1E6") == 1e6);
    CHECK(parse_number<double>("16") == 16.0);
    for (const char* text : {"", "+", ".", "+-2", "--2", "++0.5", " 1", "1 ", "0.5x", "1e",
                             "0x1p3", "inf", "-inf", "nan", "infinity", "1e400", "-1e400"}) {
        CAPTURE(text);
        CHECK_FALSE(parse_number<double>(text).has_value());
    }
}

TEST_CASE("number_text: shortest_decimal prints the shortest text that reads back exactly") {
    CHECK(shortest_decimal(0.5) == "0.5");
    CHECK(shortest_decimal(0.1) == "0.1");
    CHECK(shortest_decimal(16.0) == "16");
    CHECK(shortest_decimal(-3.25) == "-3.25");
    CHECK(shortest_decimal(1e-6) == "1e-06");
    CHECK(shortest_decimal(12000.0) == "12000");     // fixed when shorter
    CHECK(shortest_decimal(1e20) == "1e+20");        // exponent when shorter
    CHECK(shortest_decimal(0.001) == "0.001");       // fixed on a tie with "1e-03"
    CHECK(shortest_decimal(0.0001) == "1e-04");
    CHECK(shortest_decimal(0.0) == "0");
    CHECK(shortest_decimal(1.0 / 3.0) == "0.3333333333333333");
    CHECK(shortest_decimal(std::numeric_limits<double>::infinity()) == "inf");
    CHECK(shortest_decimal(-std::numeric_limits<double>::infinity()) == "-inf");
    CHECK(shortest_decimal(std::numeric_limits<double>::quiet_NaN()) == "nan");
    for (double v : {0.1 + 0.2, 1.0 / 7.0, 6.02214076e23, 5e-324, 1.7976931348623157e308,
                     246824.0 / 8.0, 0.006969953423605109}) {
        CAPTURE(v);
        CHECK(parse_number<double>(shortest_decimal(v)) == v);
    }
}
