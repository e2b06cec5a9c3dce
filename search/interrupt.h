#pragma once
// SIGINT and SIGTERM during a search. The handler only records the signal (an async-signal-safe
// store); the run looks at it at its safe points, after each write to the archive, and stops
// there with mps::Interrupted, so the archive ends with complete batches and the message can say
// how to resume. Waiting for the batch in flight can take a while (a bayesian_bits candidate
// trains for minutes), so the handler is installed with SA_RESETHAND: a second signal of the same
// kind ends the process at once, which a resume also survives (the archive is fsync'd batch by
// batch; search/archive.h).
namespace mps {

// Installs the handlers for its lifetime and restores the earlier ones after.
class InterruptScope {
public:
    InterruptScope();
    ~InterruptScope();
    InterruptScope(const InterruptScope&) = delete;
    InterruptScope& operator=(const InterruptScope&) = delete;
};

// The signal received since the scope began (SIGINT or SIGTERM), or 0.
int pending_interrupt();

// "SIGINT", "SIGTERM", else "a signal".
const char* interrupt_name(int signal_number);

} // namespace mps
