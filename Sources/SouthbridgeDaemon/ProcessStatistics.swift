#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// What the kernel says about this process, for `/metrics`: resident memory, open file
/// descriptors, CPU time and bytes written to disk, read from `/proc/self` and `getrusage`
/// each time they are asked for. A figure the kernel does not give (a `/proc` without `io`)
/// reads 0.
struct ProcessStatistics: Sendable, Equatable {
    var residentBytes: Int
    var openFileDescriptors: Int
    var cpuSeconds: Double
    /// `write_bytes` of `/proc/self/io`, what reached the block device. southbridge writes no
    /// file but the outbox (logs go to journald over a socket), so this is the outbox's
    /// writing: WAL appends and checkpoints, what an SD card wears from.
    var diskBytesWritten: Int

    static func current() -> ProcessStatistics {
        ProcessStatistics(residentBytes: residentBytes(), openFileDescriptors: openFileDescriptors(),
                          cpuSeconds: cpuSeconds(), diskBytesWritten: diskBytesWritten())
    }

    /// The second field of `/proc/self/statm`, in pages.
    private static func residentBytes() -> Int {
        let fields = procText("/proc/self/statm").split(separator: " ")
        guard fields.count > 1, let pages = Int(fields[1]) else { return 0 }
        return pages * Int(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Entries of `/proc/self/fd`, without the one listing them.
    private static func openFileDescriptors() -> Int {
        guard let directory = opendir("/proc/self/fd") else { return 0 }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            let isDot = withUnsafeBytes(of: entry.pointee.d_name) { $0.first == UInt8(ascii: ".") }
            if !isDot { count += 1 }
        }
        return max(0, count - 1)
    }

    private static func cpuSeconds() -> Double {
        var usage = rusage()
        guard getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage) == 0 else { return 0 }
        func seconds(_ time: timeval) -> Double { Double(time.tv_sec) + Double(time.tv_usec) / 1_000_000 }
        return seconds(usage.ru_utime) + seconds(usage.ru_stime)
    }

    private static func diskBytesWritten() -> Int {
        for line in procText("/proc/self/io").split(separator: "\n") where line.hasPrefix("write_bytes:") {
            return Int(String(line.dropFirst("write_bytes:".count)).trimmingWhitespace()) ?? 0
        }
        return 0
    }

    private static func procText(_ path: String) -> String {
        guard let bytes = try? FileContents.bytes(at: path, limit: 1 << 16) else { return "" }
        return String(decoding: bytes, as: UTF8.self)
    }
}
