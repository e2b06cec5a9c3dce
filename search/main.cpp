// mpsearch: searches mixed-precision quantization policies for trained CNNs.
// This file only dispatches to the subcommands (search/cli.h) and is the one place that turns an
// escaped error into one message and an exit code, by the error's kind (evaluator/base/error.h).
#include "search/cli.h"

#include "evaluator/base/error.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <exception>
#include <iostream>
#include <new>
#include <string>

namespace {

// The exit codes search/cli.h promises (README, Commands).
constexpr int exit_ok = 0;
constexpr int exit_failure = 1; // the input was fine but running failed
constexpr int exit_usage = 2;   // bad usage or input: fix the command, the config or the files
constexpr int exit_busy = 3;    // the run directory is in use by another process
constexpr int exit_signal_base = 128; // + the signal that interrupted a search (130, 143)

constexpr const char* usage = R"(usage: mpsearch <command> [options]

commands:
  search   search mixed-precision policies as a YAML run config describes (docs/config.md)
  eval     score a model (ONNX file) on a data split: accuracy, loss, speed, costs
  train    train a zoo architecture on Fashion-MNIST and export it as ONNX
  finetune quantization-aware fine-tuning of a model under a policy file (docs/finetune.md)
  export   write a model under a policy file as a quantized ONNX model (docs/export.md)

Run 'mpsearch <command> --help' for the options of a command.
)";

int run_command(const std::string& command, int argc, char** argv) {
    if (command == "eval") return mps::cli::run_eval(argc, argv);
    if (command == "search") return mps::cli::run_search(argc, argv);
    if (command == "train") return mps::cli::run_train(argc, argv);
    if (command == "finetune") return mps::cli::run_finetune(argc, argv);
    if (command == "export") return mps::cli::run_export(argc, argv);
    std::cerr << "mpsearch: unknown command '" << command << "'\n\n" << usage;
    return exit_usage;
}

int report(const std::string& command, const std::string& what, int code) {
    std::cout.flush(); // what was printed before the error comes first in a shared log
    std::cerr << "mpsearch " << command << ": " << what << "\n";
    return code;
}

// What the command printed must reach its destination: a full disk behind a redirected stdout is
// a failure, not a success with a truncated report.
int check_stdout(const std::string& command, int code) {
    errno = 0;
    std::cout.flush();
    if (std::fflush(stdout) == 0 && !std::ferror(stdout) && std::cout) return code;
    const std::string reason = errno ? std::strerror(errno) : "write error";
    return report(command, "cannot write the standard output (" + reason + ")", exit_failure);
}

} // namespace

int main(int argc, char** argv) {
    if (argc < 2) { // a usage error: the usage goes where errors go
        std::cerr << usage;
        return exit_usage;
    }
    if (!std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::cout << usage;
        return exit_ok;
    }
    const std::string command = argv[1];
    try {
        return check_stdout(command, run_command(command, argc - 1, argv + 1));
    } catch (const mps::Interrupted& e) {
        return report(command, e.what(), exit_signal_base + e.signal_number);
    } catch (const mps::Error& e) {
        const mps::ErrorKind kind = e.kind();
        return report(command, e.what(),
                      kind == mps::ErrorKind::input  ? exit_usage
                      : kind == mps::ErrorKind::busy ? exit_busy
                                                     : exit_failure);
    } catch (const dnnl::error& e) {
        return report(command, std::string("oneDNN failed: ") + e.what(), exit_failure);
    } catch (const std::bad_alloc&) {
        return report(command, "out of memory", exit_failure);
    } catch (const std::exception& e) {
        return report(command, std::string("internal error: ") + e.what(), exit_failure);
    }
}
