#pragma once
// Advice on how a run spends its cost budget, for the progress output, the final lines and the
// report:
//   - pin_share_note: what share of each cost limit (max_relative_bitops, max_weight_bytes) the
//     pinned layers take at their pins. A pinned stem can take half a W4A4 budget, leaving the
//     search too little for the rest of the network (mobilenet_tiny, `first: W8A8`: 45 %).
//     Empty without pins or without such a limit; starts with "warning: " above
//     large_pin_share.
//   - losing_baseline_note: when the chosen policy scores below a uniform baseline that costs no
//     more on every constrained measure (relative BitOPs when there is no cost limit), one line
//     saying so with the likely cause. Empty otherwise.
#include "search/run_config.h"
#include "search/run_result.h"

#include <string>

namespace mps {

inline constexpr double large_pin_share = 0.25;

std::string pin_share_note(const RunConfig& config);
std::string losing_baseline_note(const RunResult& result);

} // namespace mps
