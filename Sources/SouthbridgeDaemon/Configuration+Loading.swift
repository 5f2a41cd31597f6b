#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

extension Configuration {
    /// The largest configuration file read; anything bigger is not a configuration file.
    static let maximumFileSize = 1 << 20

    /// Reads and parses the configuration file at `path`; an unreadable file, a file that
    /// is not UTF-8 and every problem `parse(_:source:)` finds are reported the same way.
    public static func load(path: String) throws(ConfigurationError) -> Configuration {
        func failure(_ message: String) -> ConfigurationError {
            ConfigurationError(source: path, problems: [ConfigurationError.Problem(line: nil, keyPath: "", message: message)])
        }
        let bytes: [UInt8]
        do throws(FileReadError) {
            bytes = try readFile(path)
        } catch {
            throw failure("cannot read \(path): \(error.reason)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw failure("\(path) is not valid UTF-8")
        }
        return try parse(text, source: path)
    }

    private struct FileReadError: Error {
        var reason: String
    }

    private static func readFile(_ path: String) throws(FileReadError) -> [UInt8] {
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else {
            throw FileReadError(reason: String(cString: strerror(errno)))
        }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65_536)
        while true {
            let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                throw FileReadError(reason: String(cString: strerror(errno)))
            }
            if count == 0 {
                return contents
            }
            contents += buffer[..<count]
            if contents.count > maximumFileSize {
                throw FileReadError(reason: "the file is larger than \(maximumFileSize) bytes")
            }
        }
    }
}
