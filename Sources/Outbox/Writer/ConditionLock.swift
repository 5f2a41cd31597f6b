#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// A pthread mutex with one condition variable, for the writer thread to sleep on while its queue is empty.
///
/// Waiters re-check their condition in a loop; every state change broadcasts, so no wake-up is lost whichever
/// waiter (writer, `close`, `init`) it was meant for.
final class ConditionLock: @unchecked Sendable {
    private let mutex = UnsafeMutablePointer<pthread_mutex_t>.allocate(capacity: 1)
    private let condition = UnsafeMutablePointer<pthread_cond_t>.allocate(capacity: 1)

    init() {
        pthread_mutex_init(mutex, nil)
        var attributes = pthread_condattr_t()
        pthread_condattr_init(&attributes)
        // Timed waits are measured on the monotonic clock, which a step of the wall clock does not move.
        pthread_condattr_setclock(&attributes, CLOCK_MONOTONIC)
        pthread_cond_init(condition, &attributes)
        pthread_condattr_destroy(&attributes)
    }

    deinit {
        pthread_cond_destroy(condition)
        pthread_mutex_destroy(mutex)
        condition.deallocate()
        mutex.deallocate()
    }

    func lock() {
        pthread_mutex_lock(mutex)
    }

    func unlock() {
        pthread_mutex_unlock(mutex)
    }

    /// Releases the lock until another thread broadcasts, then takes it again. Call with the lock held.
    func wait() {
        pthread_cond_wait(condition, mutex)
    }

    /// Like `wait`, but returns by `deadlineNS` on the monotonic clock at the latest.
    func wait(untilMonotonicNS deadlineNS: UInt64) {
        var deadline = timespec(tv_sec: Int(deadlineNS / 1_000_000_000), tv_nsec: Int(deadlineNS % 1_000_000_000))
        pthread_cond_timedwait(condition, mutex, &deadline)
    }

    /// Now on the monotonic clock, in nanoseconds.
    static func monotonicNS() -> UInt64 {
        var now = timespec()
        clock_gettime(CLOCK_MONOTONIC, &now)
        return UInt64(now.tv_sec) * 1_000_000_000 + UInt64(now.tv_nsec)
    }

    func broadcast() {
        pthread_cond_broadcast(condition)
    }
}
