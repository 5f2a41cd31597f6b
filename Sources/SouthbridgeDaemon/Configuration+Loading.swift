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
    /// is not UTF-8 and every problem `parse(_:source:refusingPlaceholder:)` finds are reported
    /// the same way.
    public static func load(path: String, refusingPlaceholder: Bool = false) throws(ConfigurationError) -> Configuration {
        func failure(_ message: String) -> ConfigurationError {
            ConfigurationError(source: path, problems: [ConfigurationError.Problem(line: nil, keyPath: "", message: message)])
        }
        let bytes: [UInt8]
        do throws(FileContents.ReadError) {
            bytes = try FileContents.bytes(at: path, limit: maximumFileSize)
        } catch {
            throw failure("cannot read \(path): \(error.reason)")
        }
        guard let text = String(validating: bytes, as: UTF8.self) else {
            throw failure("\(path) is not valid UTF-8")
        }
        return try parse(text, source: path, refusingPlaceholder: refusingPlaceholder)
    }
}
