#include "search/interrupt.h"

#include <csignal>
#include <string>

namespace mps {

namespace {

volatile std::sig_atomic_t received = 0;
struct sigaction previous_int, previous_term;

extern "C" void record_signal(int signal_number) { received = signal_number; }

} // namespace

InterruptScope::InterruptScope() {
    received = 0;
    struct sigaction action {};
    action.sa_handler = record_signal;
    sigemptyset(&action.sa_mask);
    // SA_RESTART: reads and writes in progress complete instead of failing with EINTR, so the
    // batch in flight is written whole.
    action.sa_flags = SA_RESETHAND | SA_RESTART;
    sigaction(SIGINT, &action, &previous_int);
    sigaction(SIGTERM, &action, &previous_term);
}

InterruptScope::~InterruptScope() {
    sigaction(SIGINT, &previous_int, nullptr);
    sigaction(SIGTERM, &previous_term, nullptr);
}

int pending_interrupt() { return received; }

const char* interrupt_name(int signal_number) {
    if (signal_number == SIGINT) return "SIGINT";
    if (signal_number == SIGTERM) return "SIGTERM";
    return "a signal";
}

} // namespace mps
