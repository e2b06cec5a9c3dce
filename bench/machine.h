#pragma once
// A description of the machine a benchmark ran on, for the committed results: CPU model, the ISA
// flags that decide which oneDNN kernels run, core count, oneDNN version.
#include <nlohmann/json.hpp>

namespace mps::bench {

nlohmann::json describe_machine();

// "2026-11-27T13:05:42Z"
std::string utc_timestamp();

} // namespace mps::bench
