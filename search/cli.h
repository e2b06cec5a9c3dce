#pragma once
// Subcommands of the mpsearch executable. Each takes the arguments after its name, returns the
// process exit code, and reports bad input as one clear message on stderr (exit 2 for usage and
// input errors, 1 for failures while running).
namespace mps::cli {

int run_eval(int argc, char** argv);
int run_train(int argc, char** argv);
int run_search(int argc, char** argv);
int run_finetune(int argc, char** argv);

} // namespace mps::cli
