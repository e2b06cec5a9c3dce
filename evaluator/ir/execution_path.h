#pragma once
// ExecutionPath: how the quantized network computes a policy's function (docs/semantics.md,
// "The quantized network"): `integer` runs the layers that have an integer form on oneDNN's int8
// kernels and the rest in float; `fake` runs everything as float32 on quantize-dequantized
// values; `reference` runs every quantizable layer as the plain loops of evaluator/ref/ (double
// accumulation; slow, for checking the other two). All compute the same function up to rounding.
#include <string>

namespace mps {

enum class ExecutionPath { integer, fake, reference };
const char* execution_path_name(ExecutionPath path); // "int", "fake", "ref"
ExecutionPath parse_execution_path(const std::string& name); // "int" | "fake" | "ref"; mps::Error
                                                             // else

} // namespace mps
