// The registry: every policy the run config's `policy: {name: ...}` can select, in the order
// --help and the docs list them. Each policy file defines `PolicyInfo <name>_policy_info()`;
// registering a policy is one declaration and one table line here.
#include "policies/policy.h"

#include <vector>

namespace mps {

PolicyInfo uniform_policy_info();
PolicyInfo random_policy_info();
PolicyInfo greedy_sensitivity_policy_info();
PolicyInfo autoq_policy_info();
PolicyInfo bayesian_bits_policy_info();
// >>> Declarations of further policies go here (e.g. PolicyInfo greedy_sensitivity_policy_info();).

std::span<const PolicyInfo> registered_policies() {
    static const std::vector<PolicyInfo> table = {
        uniform_policy_info(),
        random_policy_info(),
        greedy_sensitivity_policy_info(),
        autoq_policy_info(),
        bayesian_bits_policy_info(),
        // >>> Further policies go here, one line each (e.g. greedy_sensitivity_policy_info(),).
    };
    return table;
}

} // namespace mps
