#include "bench/machine.h"

#include "evaluator/engine/int8_isa.h"

#include <oneapi/dnnl/dnnl.hpp>

#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <thread>

namespace mps::bench {

namespace {

// The value of the first "key : value" line of /proc/cpuinfo whose key is `key`.
std::string cpuinfo_field(const std::string& key) {
    std::ifstream in("/proc/cpuinfo");
    for (std::string line; std::getline(in, line);) {
        if (line.rfind(key, 0) != 0) continue;
        const auto colon = line.find(':');
        if (colon != std::string::npos) return line.substr(colon + 2);
    }
    return "unknown";
}

} // namespace

nlohmann::json describe_machine() {
    std::istringstream flags(cpuinfo_field("flags"));
    std::vector<std::string> isa;
    for (std::string f; flags >> f;)
        if (f.rfind("avx", 0) == 0 || f.rfind("amx", 0) == 0 || f == "fma") isa.push_back(f);
    const dnnl_version_t* v = dnnl_version();
    std::ostringstream onednn;
    onednn << v->major << "." << v->minor << "." << v->patch;
    return {{"cpu", cpuinfo_field("model name")},
            {"isa_flags", isa},
            {"hardware_threads", std::thread::hardware_concurrency()},
            {"onednn", onednn.str()},
            {"onednn_isa", mps::effective_isa_name()}};
}

std::string utc_timestamp() {
    const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
    char text[32];
    std::strftime(text, sizeof text, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
    return text;
}

} // namespace mps::bench
