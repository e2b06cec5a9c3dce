#include "search/gnuplot.h"

#include "evaluator/base/atomic_file.h"
#include "evaluator/base/number_text.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>

extern char** environ;

namespace mps {

namespace fs = std::filesystem;

// Inside a gnuplot single-quoted string only the quote itself is special (written twice).
std::string gnuplot_quoted(std::string_view text) {
    std::string out = "'";
    for (char c : text) {
        if (c == '\'') out += '\'';
        if (c != '\n' && c != '\r') out += c;
    }
    return out + "'";
}

std::string datablock(const std::string& name, const std::vector<PlotPoint>& points, bool log_x) {
    std::string out = "$" + name + " << EOD\n";
    for (const PlotPoint& p : points) {
        if ((log_x && !(p.x > 0.0)) || !std::isfinite(p.x) || !std::isfinite(p.y)) continue;
        out += shortest_decimal(p.x) + ' ' + shortest_decimal(p.y);
        if (!p.label.empty()) out += " \"" + p.label + '"';
        out += '\n';
    }
    return out + "EOD\n";
}

namespace {

// The executable `program` in a directory of $PATH, or nullopt.
std::optional<std::string> find_on_path(const std::string& program) {
    const char* path = std::getenv("PATH");
    if (!path) return std::nullopt;
    std::string_view dirs(path);
    for (;;) {
        const size_t colon = dirs.find(':');
        const std::string dir(dirs.substr(0, colon));
        const fs::path candidate = fs::path(dir.empty() ? "." : dir) / program; // POSIX: "" = cwd
        std::error_code ec;
        if (fs::is_regular_file(candidate, ec) && ::access(candidate.c_str(), X_OK) == 0)
            return candidate.string();
        if (colon == std::string_view::npos) return std::nullopt;
        dirs.remove_prefix(colon + 1);
    }
}

struct ProgramRun {
    int status = -1;         // waitpid status
    std::string diagnostics; // what the program wrote to stderr, or why it could not start
};

// Runs `program argument` with stdin and stdout on /dev/null and collects its stderr.
ProgramRun run_program(const std::string& program, const std::string& argument) {
    ProgramRun run;
    int pipe_fds[2];
    // Close-on-exec keeps both ends out of programs other threads start meanwhile.
    if (::pipe2(pipe_fds, O_CLOEXEC) != 0) {
        run.diagnostics = std::string("cannot create a pipe: ") + std::strerror(errno);
        return run;
    }
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    posix_spawn_file_actions_adddup2(&actions, pipe_fds[1], 2);
    std::string arg0 = program, arg1 = argument;
    char* argv[] = {arg0.data(), arg1.data(), nullptr};
    pid_t pid = 0;
    const int spawned = ::posix_spawn(&pid, program.c_str(), &actions, nullptr, argv, environ);
    posix_spawn_file_actions_destroy(&actions);
    ::close(pipe_fds[1]);
    if (spawned != 0) {
        ::close(pipe_fds[0]);
        run.diagnostics = std::string("cannot start it: ") + std::strerror(spawned);
        return run;
    }
    char buffer[4096];
    for (;;) {
        const ssize_t n = ::read(pipe_fds[0], buffer, sizeof buffer);
        if (n > 0) {
            if (run.diagnostics.size() < (64 << 10)) run.diagnostics.append(buffer, size_t(n));
        } else if (n == 0 || errno != EINTR) {
            break;
        }
    }
    ::close(pipe_fds[0]);
    while (::waitpid(pid, &run.status, 0) < 0 && errno == EINTR) {
    }
    return run;
}

// The last few lines of a program's stderr, on one line, for a warning.
std::string last_lines(const std::string& text) {
    std::vector<std::string> lines;
    std::istringstream in(text);
    for (std::string line; std::getline(in, line);) {
        line.erase(0, line.find_first_not_of(" \t^"));
        if (!line.empty()) lines.push_back(line);
    }
    std::string out;
    for (size_t i = lines.size() > 3 ? lines.size() - 3 : 0; i < lines.size(); ++i)
        out += (out.empty() ? "" : " / ") + lines[i];
    return out.size() > 400 ? out.substr(0, 400) + "..." : out;
}

// Removes the files it holds when it goes out of scope (temporaries of the svg step).
class TemporaryFiles {
public:
    TemporaryFiles() = default;
    TemporaryFiles(const TemporaryFiles&) = delete;
    TemporaryFiles& operator=(const TemporaryFiles&) = delete;
    ~TemporaryFiles() {
        for (const std::string& path : paths_) {
            std::error_code ignored;
            fs::remove(path, ignored);
        }
    }
    std::string add(const std::string& path) {
        paths_.push_back(path);
        return path;
    }

private:
    std::vector<std::string> paths_;
};


// A fresh name next to `path` for a temporary of the rendering.
std::string temporary_name(const std::string& path, const std::string& suffix) {
    static std::atomic<int> counter{0};
    const fs::path p(path);
    return (p.parent_path() / ("." + p.filename().string() + "." + std::to_string(::getpid()) +
                               "." + std::to_string(counter++) + suffix))
        .string();
}

std::string read_whole_file(const std::string& path) {
    std::ifstream in(path, std::ios::binary);
    std::ostringstream bytes;
    bytes << in.rdbuf();
    return bytes.str();
}

} // namespace

std::optional<std::string> render_svg(const std::string& svg_path,
                                      const std::function<std::string(const std::string&)>& script_for) {
    const std::string name = fs::path(svg_path).filename().string();
    auto skip = [&](const std::string& why) {
        std::error_code ignored;
        fs::remove(svg_path, ignored);
        return why + "; " + name + " not written";
    };
    const std::optional<std::string> gnuplot = find_on_path("gnuplot");
    if (!gnuplot) return skip("gnuplot not found on PATH (Debian package gnuplot-nox)");

    TemporaryFiles temporaries;
    const std::string rendered = temporaries.add(temporary_name(svg_path, ".svg"));
    const std::string script_text = script_for(rendered);
    if (script_text.empty()) return skip("nothing to plot");
    const std::string script = temporaries.add(temporary_name(svg_path, ".gp"));
    write_file_atomically(script, script_text);

    const ProgramRun run = run_program(*gnuplot, script);
    if (!WIFEXITED(run.status) || WEXITSTATUS(run.status) != 0) {
        std::string why = *gnuplot + " failed";
        if (WIFEXITED(run.status)) why += " (exit status " + std::to_string(WEXITSTATUS(run.status)) + ")";
        else if (WIFSIGNALED(run.status)) why += " (signal " + std::to_string(WTERMSIG(run.status)) + ")";
        const std::string said = last_lines(run.diagnostics);
        return skip(said.empty() ? why : why + ": " + said);
    }
    const std::string svg = read_whole_file(rendered);
    const bool complete = (svg.starts_with("<?xml") || svg.starts_with("<svg")) &&
                          svg.find("</svg>") != std::string::npos;
    if (!complete) return skip(*gnuplot + " produced no complete SVG");
    write_file_atomically(svg_path, svg);
    return std::nullopt;
}

} // namespace mps
