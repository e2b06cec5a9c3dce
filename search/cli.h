#pragma once
// Subcommands of the mpsearch executable. Each takes the arguments after its name and returns 0
// (done, or --help), or throws: mps::Error (evaluator/base/error.h) and anything else escape to
// search/main.cpp, the one place that prints the message and picks the exit code:
//   0  success
//   1  a failure while running: an output that cannot be written (disk full, a directory that
//      is not writable or is a file), the training diverging, oneDNN failing, an internal error
//   2  bad usage or input: an unknown flag, an unreadable or malformed model, data set, config,
//      policy file or archive, a policy of another model
//   3  busy: the search's run directory is locked by another running mpsearch (its PID named)
//   130, 143  search stopped by SIGINT, SIGTERM (128 + the signal, the shell's convention) once
//      the batch in flight was written; the run directory is resumable (the message says how)
namespace mps::cli {

int run_eval(int argc, char** argv);
int run_train(int argc, char** argv);
int run_search(int argc, char** argv);
int run_finetune(int argc, char** argv);
int run_export(int argc, char** argv);

} // namespace mps::cli
