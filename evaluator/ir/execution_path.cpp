#include "evaluator/ir/execution_path.h"

#include "evaluator/base/error.h"

namespace mps {

const char* execution_path_name(ExecutionPath path) {
    return path == ExecutionPath::integer ? "int" : "fake";
}

ExecutionPath parse_execution_path(const std::string& name) {
    if (name == "int") return ExecutionPath::integer;
    if (name == "fake") return ExecutionPath::fake;
    throw Error("unknown execution path '" + name + "'; use 'int' (integer oneDNN kernels where " +
                "the policy allows, the default) or 'fake' (float32 fake-quant everywhere)");
}

} // namespace mps
