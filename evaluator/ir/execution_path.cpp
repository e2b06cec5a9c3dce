#include "evaluator/ir/execution_path.h"

#include "evaluator/base/error.h"

namespace mps {

const char* execution_path_name(ExecutionPath path) {
    switch (path) {
    case ExecutionPath::integer: return "int";
    case ExecutionPath::fake: return "fake";
    case ExecutionPath::reference: return "ref";
    }
    return "int";
}

ExecutionPath parse_execution_path(const std::string& name) {
    if (name == "int") return ExecutionPath::integer;
    if (name == "fake") return ExecutionPath::fake;
    if (name == "ref") return ExecutionPath::reference;
    throw Error("unknown execution path '" + name + "'; use 'int' (integer oneDNN kernels where " +
                "the policy allows, the default), 'fake' (float32 fake-quant everywhere) or " +
                "'ref' (the plain reference loops for every quantizable layer; slow)");
}

} // namespace mps
