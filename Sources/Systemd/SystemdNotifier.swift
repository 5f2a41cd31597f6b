import CSystemd
import Glibc

/// Speaks the `sd_notify` protocol to the service manager that started southbridge.
///
/// The socket comes from `NOTIFY_SOCKET` (read once, at start); without it, as when run
/// from a shell, every call is a cheap no-op. The notifier never decides on its own
/// whether the daemon is healthy: the daemon calls `watchdogPing()` only after its own
/// health probe has passed.
public struct SystemdNotifier: Sendable {
    /// How often the watchdog wants a ping: half of `WATCHDOG_USEC`, as systemd recommends.
    /// `nil` when no watchdog is configured for this process.
    public let watchdogPingInterval: Duration?
    /// The datagram socket systemd listens on; `@` starts an abstract socket name.
    public let socketPath: String?

    /// Reads `NOTIFY_SOCKET` and the watchdog settings systemd put in the environment.
    public init() {
        var usec: UInt64 = 0
        let interval: Duration? = (sd_watchdog_enabled(0, &usec) > 0 && usec > 0) ? .microseconds(Int64(usec / 2)) : nil
        self.init(socketPath: getenv("NOTIFY_SOCKET").map { String(cString: $0) }, watchdogPingInterval: interval)
    }

    /// A notifier for a given socket and ping interval, for tests that stand in for systemd.
    public init(socketPath: String?, watchdogPingInterval: Duration?) {
        self.socketPath = socketPath
        self.watchdogPingInterval = watchdogPingInterval
    }

    /// Storage is open and every listener is bound.
    public func ready(status: String) { send("READY=1\nSTATUS=\(Self.oneLine(status))") }

    /// A one-line summary shown by `systemctl status`.
    public func status(_ text: String) { send("STATUS=\(Self.oneLine(text))") }

    /// Tells the watchdog the daemon answered its health probe.
    public func watchdogPing() { send("WATCHDOG=1") }

    /// A graceful stop has begun.
    public func stopping(status: String) { send("STOPPING=1\nSTATUS=\(Self.oneLine(status))") }

    /// One datagram per state change, as `sd_notify(3)` sends it, except that it never waits:
    /// a service manager that has stopped reading (its queue holds `net.unix.max_dgram_qlen`
    /// datagrams, 10 by default) loses the message instead of stopping the thread that sent it,
    /// which may be the sender's event loop.
    private func send(_ state: String) {
        guard let socketPath, !socketPath.isEmpty else { return }
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return }
        defer { close(fd) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        var pathBytes = Array(socketPath.utf8)
        if pathBytes.first == UInt8(ascii: "@") { pathBytes[0] = 0 }
        guard pathBytes.count < MemoryLayout.size(ofValue: address.sun_path) else { return }
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: pathBytes) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + pathBytes.count + (pathBytes.first == 0 ? 0 : 1))
        var message = Array(state.utf8)
        _ = withUnsafePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { socketAddress in
                message.withUnsafeMutableBytes { sendto(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL | MSG_DONTWAIT), socketAddress, length) }
            }
        }
    }

    private static func oneLine(_ text: String) -> String {
        String(text.map { $0.isNewline ? " " : $0 })
    }
}
