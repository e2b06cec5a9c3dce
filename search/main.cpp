// mpsearch: searches mixed-precision quantization policies for trained CNNs.
// This file only dispatches to the subcommands (search/cli.h) and turns escaped errors into one
// message and a non-zero exit code.
#include "search/cli.h"

#include "evaluator/error.h"

#include <cstring>
#include <exception>
#include <iostream>
#include <string>

namespace {

constexpr const char* usage = R"(usage: mpsearch <command> [options]

commands:
  search   search mixed-precision policies as a YAML run config describes (docs/config.md)
  eval     score a model (ONNX file) on a data split: accuracy, loss, speed, costs
  train    train a zoo architecture on Fashion-MNIST and export it as ONNX
  finetune quantization-aware fine-tuning of a model under a policy file (docs/finetune.md)

Run 'mpsearch <command> --help' for the options of a command.
)";

} // namespace

int main(int argc, char** argv) {
    if (argc < 2 || !std::strcmp(argv[1], "--help") || !std::strcmp(argv[1], "-h")) {
        std::cout << usage;
        return argc < 2 ? 2 : 0;
    }
    const std::string command = argv[1];
    try {
        if (command == "eval") return mps::cli::run_eval(argc - 1, argv + 1);
        if (command == "search") return mps::cli::run_search(argc - 1, argv + 1);
        if (command == "train") return mps::cli::run_train(argc - 1, argv + 1);
        if (command == "finetune") return mps::cli::run_finetune(argc - 1, argv + 1);
        std::cerr << "mpsearch: unknown command '" << command << "'\n\n" << usage;
        return 2;
    } catch (const mps::Error& e) {
        std::cerr << "mpsearch " << command << ": " << e.what() << "\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "mpsearch " << command << ": internal error: " << e.what() << "\n";
        return 1;
    }
}
