import Glibc
import SouthbridgeSwarm

/// Which CPUs a benchmark's processes and threads may run on, so the daemon and the swarm
/// that loads it do not take turns on one core.
///
/// Glibc declares `sched_setaffinity` only under `_GNU_SOURCE`, which Swift's Glibc module
/// is not built with, so the function is looked up at run time.
public enum CPUAffinity {
    private typealias SetAffinity = @convention(c) (pid_t, Int, UnsafeRawPointer) -> Int32
    private typealias GetAffinity = @convention(c) (pid_t, Int, UnsafeMutableRawPointer) -> Int32

    /// Pins every thread this process has now to `cpus`; threads started later inherit the
    /// mask of the thread that starts them.
    public static func pinThisProcess(to cpus: [Int]) throws {
        guard let directory = opendir("/proc/self/task") else {
            throw FileSupportError("cannot list /proc/self/task: \(String(cString: strerror(errno)))")
        }
        defer { closedir(directory) }
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard let thread = pid_t(name) else { continue }
            try setMask(mask(cpus), thread: thread)
        }
    }

    /// Runs `body` with the calling thread pinned to `cpus`, then restores its mask: a child
    /// spawned inside starts with that mask before it runs any code of its own.
    public static func withCallingThread<Result>(pinnedTo cpus: [Int], _ body: () throws -> Result) throws -> Result {
        var previous = cpu_set_t()
        let status = withUnsafeMutableBytes(of: &previous) { getAffinity(0, $0.count, $0.baseAddress!) }
        guard status == 0 else { throw FileSupportError("sched_getaffinity: \(String(cString: strerror(errno)))") }
        try setMask(mask(cpus), thread: 0)
        defer { try? setMask(previous, thread: 0) }
        return try body()
    }

    /// The distinct `Cpus_allowed_list` values of a process's threads (this process's when
    /// `pid` is nil), to check that pinning took: `["0"]` when every thread is on CPU 0.
    public static func allowedCPULists(pid: pid_t? = nil) -> Set<String> {
        let tasks = "/proc/\(pid.map { "\($0)" } ?? "self")/task"
        guard let directory = opendir(tasks) else { return [] }
        defer { closedir(directory) }
        var lists: Set<String> = []
        while let entry = readdir(directory) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
            guard pid_t(name) != nil else { continue }
            for line in readFileText("\(tasks)/\(name)/status").split(separator: "\n") where line.hasPrefix("Cpus_allowed_list:") {
                lists.insert(String(line.dropFirst("Cpus_allowed_list:".count).drop { $0 == " " || $0 == "\t" }))
            }
        }
        return lists
    }

    private static func mask(_ cpus: [Int]) -> cpu_set_t {
        var set = cpu_set_t()
        withUnsafeMutableBytes(of: &set) { bytes in
            for cpu in cpus where cpu >= 0 && cpu < bytes.count * 8 {
                bytes[cpu / 8] |= UInt8(1) << UInt8(cpu % 8)
            }
        }
        return set
    }

    private static func setMask(_ set: cpu_set_t, thread: pid_t) throws {
        var set = set
        let status = withUnsafeBytes(of: &set) { setAffinity(thread, $0.count, $0.baseAddress!) }
        guard status == 0 else {
            throw FileSupportError("sched_setaffinity(\(thread)): \(String(cString: strerror(errno)))")
        }
    }

    private static let setAffinity: SetAffinity = unsafeBitCast(symbol("sched_setaffinity"), to: SetAffinity.self)
    private static let getAffinity: GetAffinity = unsafeBitCast(symbol("sched_getaffinity"), to: GetAffinity.self)

    private static func symbol(_ name: String) -> UnsafeMutableRawPointer {
        // RTLD_DEFAULT is the null handle: search the process's global symbols (glibc's among them).
        guard let address = dlsym(UnsafeMutableRawPointer(bitPattern: 0), name) else {
            fatalError("glibc has no \(name)")
        }
        return address
    }
}
