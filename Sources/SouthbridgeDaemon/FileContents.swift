#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads a whole small file (the config, the ingest token) with plain `read(2)`, no Foundation.
enum FileContents {
    struct ReadError: Error {
        var reason: String
    }

    /// The file's bytes; throws with the system's reason, or when it is longer than `limit`.
    static func bytes(at path: String, limit: Int) throws(ReadError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw ReadError(reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(reason: String(cString: strerror(errno)))
            }
            if count == 0 {
                return contents
            }
            contents += buffer[..<count]
            if contents.count > limit {
                throw ReadError(reason: "the file is larger than \(limit) bytes")
            }
        }
    }
}
