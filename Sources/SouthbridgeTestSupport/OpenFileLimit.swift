import Glibc
import SouthbridgeSwarm

/// This process's `RLIMIT_NOFILE`: a swarm of a thousand servers and the daemon talking to
/// them need thousands of descriptors, more than the usual soft limit of 1,024.
public enum OpenFileLimit {
    /// Raises the soft limit to the hard limit and returns it; children started afterwards
    /// inherit it.
    @discardableResult
    public static func raiseToHardLimit() throws -> Int {
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        var limit = rlimit()
        guard getrlimit(resource, &limit) == 0 else {
            throw FileSupportError("getrlimit(RLIMIT_NOFILE): \(String(cString: strerror(errno)))")
        }
        limit.rlim_cur = limit.rlim_max
        guard setrlimit(resource, &limit) == 0 else {
            throw FileSupportError("setrlimit(RLIMIT_NOFILE, \(limit.rlim_max)): \(String(cString: strerror(errno)))")
        }
        return Int(clamping: limit.rlim_cur)
    }
}
