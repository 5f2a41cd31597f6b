import Glibc

/// Reads small configuration files such as `/etc/hosts` and `/etc/resolv.conf`.
enum SystemTextFile {
    /// The whole file as UTF-8 text (invalid bytes replaced), or nil if it cannot be read.
    /// Files larger than `limit` bytes are cut there: these files are read once at start-up
    /// and a runaway one must not exhaust memory.
    static func contents(of path: String, limit: Int = 4 << 20) -> String? {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 16384)
        while bytes.count < limit {
            let count = buffer.withUnsafeMutableBytes { Glibc.read(fd, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes.append(contentsOf: buffer[0..<count])
        }
        return String(decoding: bytes.prefix(limit), as: UTF8.self)
    }
}
