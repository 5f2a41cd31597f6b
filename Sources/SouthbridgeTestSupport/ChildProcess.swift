import Glibc
import Synchronization
import SouthbridgeSwarm

/// A program started by a test or benchmark (southbridge itself, `openssl s_server`,
/// dnsmasq, nginx), with its output going to a log file for when something fails.
public final class ChildProcess: @unchecked Sendable {
    public let pid: pid_t
    public let logPath: String
    private var exitStatus: Int32?

    /// Starts `executable` (looked up in `PATH` when it has no `/`) with `arguments`;
    /// `environment` entries are added to this process's own. With `cpus`, the child and
    /// every thread it starts run only on those CPUs.
    public init(executable: String, arguments: [String], environment: [String: String] = [:], logPath: String,
                cpus: [Int]? = nil) throws {
        var environmentEntries: [String] = []
        var current = environ
        while let entry = current.pointee {
            let text = String(cString: entry)
            let key = String(text.prefix { $0 != "=" })
            if environment[key] == nil { environmentEntries.append(text) }
            current += 1
        }
        environmentEntries += environment.map { "\($0.key)=\($0.value)" }

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, logPath, O_WRONLY | O_CREAT | O_APPEND, 0o644)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // NIO opens and accepts sockets without close-on-exec, so a child would otherwise keep
        // a copy of every connection the tests have open at the moment it starts, and a close
        // on either end would not reach the other until the child exits.
        guard closeFrom(3, &actions) == 0 else { throw FileSupportError("posix_spawn: cannot close inherited descriptors") }

        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environmentEntries.map { strdup($0) } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        // Test runners block signals on their threads and the mask survives exec: reset it,
        // or the child would ignore the SIGTERM that stops it.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var emptySet = sigset_t()
        sigemptyset(&emptySet)
        posix_spawnattr_setsigmask(&attributes, &emptySet)
        var defaultSignals = sigset_t()
        sigemptyset(&defaultSignals)
        for signal in [SIGTERM, SIGINT, SIGPIPE, SIGHUP] { sigaddset(&defaultSignals, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaultSignals)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        var child: pid_t = 0
        func spawn() -> Int32 {
            executable.contains("/")
                ? posix_spawn(&child, executable, &actions, &attributes, argv, envp)
                : posix_spawnp(&child, executable, &actions, &attributes, argv, envp)
        }
        // A child inherits the affinity of the thread that spawns it, so pinning that thread
        // for the spawn pins the child from its first instruction, with no window in which
        // it could start threads elsewhere.
        let status = try cpus.map { try CPUAffinity.withCallingThread(pinnedTo: $0, spawn) } ?? spawn()
        guard status == 0 else {
            throw FileSupportError("cannot start \(executable): \(String(cString: strerror(status)))")
        }
        pid = child
        self.logPath = logPath
    }

    public func signal(_ signal: Int32) {
        if exitStatus == nil { kill(pid, signal) }
    }

    /// Waits up to `timeout` for the process to end; returns its exit code, or nil if it is
    /// still running (or was killed by a signal, then -signal).
    public func waitForExit(timeout: Duration) async -> Int32? {
        if let exitStatus { return exitStatus }
        let deadline = ContinuousClock.now + timeout
        while true {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                let code = (status & 0x7f) == 0 ? (status >> 8) & 0xff : -(status & 0x7f)
                exitStatus = code
                return code
            }
            guard ContinuousClock.now < deadline else { return nil }
            try? await Task.sleep(for: .milliseconds(20))
        }
    }

    /// Sends SIGTERM and waits for the process to end, blocking the caller.
    public func stop() {
        guard exitStatus == nil else { return }
        kill(pid, SIGTERM)
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        exitStatus = -SIGTERM
    }

    /// Kills the process if it still runs and reaps it.
    public func terminate() async {
        signal(SIGKILL)
        _ = await waitForExit(timeout: .seconds(5))
    }

    /// What the process printed so far.
    public func output() -> String {
        readFileText(logPath)
    }
}

/// A unix datagram socket standing in for systemd's `NOTIFY_SOCKET`: collects every
/// `sd_notify` message a child sends. A thread of its own reads them as they come, as systemd
/// does, so a long test never fills the socket's queue (`net.unix.max_dgram_qlen`, 10 here).
public final class NotifySocket: Sendable {
    public let path: String
    private let inbox: Inbox
    private let reader: pthread_t

    public init(path: String) throws {
        self.path = path
        let fd = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw FileSupportError("cannot create a datagram socket: \(String(cString: strerror(errno)))") }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw FileSupportError("socket path too long: \(path)")
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) }
        }
        guard status == 0 else {
            let reason = String(cString: strerror(errno))
            close(fd)
            throw FileSupportError("cannot bind \(path): \(reason)")
        }
        inbox = Inbox(fd: fd)
        var thread = pthread_t()
        let context = Unmanaged.passRetained(inbox).toOpaque()
        let code = pthread_create(&thread, nil, { context in
            Unmanaged<Inbox>.fromOpaque(context!).takeRetainedValue().readUntilClosed()
            return nil
        }, context)
        guard code == 0 else {
            Unmanaged<Inbox>.fromOpaque(context).release()
            close(fd)
            throw FileSupportError("cannot start the notify socket's reader: pthread_create returned \(code)")
        }
        reader = thread
    }

    deinit {
        inbox.closing.store(true, ordering: .releasing)
        pthread_join(reader, nil)
        close(inbox.fd)
        unlink(path)
    }

    /// Every message received so far, oldest first, including any still queued in the socket.
    public func messages() -> [String] {
        inbox.drain()
    }

    /// Waits until a message containing `text` arrives; returns whether it did in time.
    public func waitFor(_ text: String, timeout: Duration) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if messages().contains(where: { $0.contains(text) }) { return true }
            try? await Task.sleep(for: .milliseconds(20))
        }
        return false
    }

    private final class Inbox: Sendable {
        let fd: Int32
        let closing = Atomic<Bool>(false)
        private let received = Mutex<[String]>([])

        init(fd: Int32) {
            self.fd = fd
        }

        /// Reads whatever is queued, under the lock, so that a caller sees every message sent
        /// before its call and in the order sent.
        @discardableResult
        func drain() -> [String] {
            received.withLock { received in
                var buffer = [UInt8](repeating: 0, count: 4096)
                while true {
                    let count = recv(fd, &buffer, buffer.count, Int32(MSG_DONTWAIT))
                    if count <= 0 { break }
                    received.append(String(decoding: buffer[0..<count], as: UTF8.self))
                }
                return received
            }
        }

        /// Drains the socket whenever something arrives; wakes at least every 50 ms to see
        /// whether the socket is being closed.
        func readUntilClosed() {
            while !closing.load(ordering: .acquiring) {
                var ready = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
                if poll(&ready, 1, 50) > 0 {
                    drain()
                }
            }
        }
    }
}

/// glibc's `posix_spawn_file_actions_addclosefrom_np` (2.34 and later), which Swift's Glibc
/// module does not declare: the child closes every descriptor from `lowest` on before exec.
private func closeFrom(_ lowest: Int32, _ actions: inout posix_spawn_file_actions_t) -> Int32 {
    typealias AddCloseFrom = @convention(c) (UnsafeMutablePointer<posix_spawn_file_actions_t>, Int32) -> Int32
    guard let symbol = dlsym(UnsafeMutableRawPointer(bitPattern: 0), "posix_spawn_file_actions_addclosefrom_np") else {
        return -1
    }
    return unsafeBitCast(symbol, to: AddCloseFrom.self)(&actions, lowest)
}
