#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif

/// Reads and writes the signing key in Synapse's file format, so one key file can move between Synapse and
/// southbridge: one key per line, `ed25519 <version> <unpadded base64 32-byte seed>`; the first key signs.
///
/// `write` creates the file with mode 0600 and never replaces an existing file. Errors name the path, the
/// line and the rule broken, and never quote the seed.
public enum SigningKeyFile {
    /// Key files are a few lines; anything bigger than this is not a key file.
    public static let maximumSize = 64 * 1024

    /// Loads the first key of the file at `path`.
    public static func read(path: String) throws(SigningKeyFileError) -> SigningKey {
        var contents = try readContents(path: path)
        defer { wipe(&contents) }
        let lines = contents.split(separator: UInt8(ascii: "\n"), omittingEmptySubsequences: false)
        for (lineIndex, line) in lines.enumerated() {
            let fields = line.split(whereSeparator: { $0 == 0x20 || $0 == 0x09 || $0 == 0x0D })
            if fields.isEmpty { continue }
            return try parseKey(fields: fields, path: path, line: lineIndex + 1)
        }
        throw SigningKeyFileError(path: path, line: nil, reason: .noKey)
    }

    /// Writes `key` to a new file at `path` with mode 0600; fails if the file already exists.
    public static func write(_ key: SigningKey, path: String) throws(SigningKeyFileError) {
        func fail(_ reason: SigningKeyFileError.Reason) -> SigningKeyFileError {
            SigningKeyFileError(path: path, line: nil, reason: reason)
        }
        let descriptor = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard descriptor >= 0 else {
            let code = errno
            throw fail(code == EEXIST ? .alreadyExists : .cannotCreate(errno: code))
        }
        var line = key.withSeed { seed in
            Array("\(SigningKey.algorithm) \(key.version) \(Base64.encodeUnpadded(seed))\n".utf8)
        }
        defer { wipe(&line) }
        let failure: Int32? = line.withUnsafeBytes { bytes in
            var written = 0
            while written < bytes.count {
                let result = systemWrite(descriptor, bytes.baseAddress! + written, bytes.count - written)
                if result < 0 {
                    if errno == EINTR { continue }
                    return errno
                }
                written += result
            }
            return fsync(descriptor) == 0 ? nil : errno
        }
        let closeFailed = close(descriptor) != 0
        let closeErrno = errno
        if let code = failure ?? (closeFailed ? closeErrno : nil) {
            unlink(path)
            throw fail(.cannotWrite(errno: code))
        }
        syncParentDirectory(of: path)
    }

    /// Makes the new directory entry durable, so a crash cannot lose a key that may already be in use.
    /// Best effort: some filesystems refuse to sync a directory, and the key file itself is already synced.
    private static func syncParentDirectory(of path: String) {
        let bytes = Array(path.utf8)
        let directory: String
        if let slash = bytes.lastIndex(of: UInt8(ascii: "/")) {
            directory = slash == 0 ? "/" : String(decoding: bytes[..<slash], as: UTF8.self)
        } else {
            directory = "."
        }
        let descriptor = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return }
        _ = fsync(descriptor)
        close(descriptor)
    }

    private static func readContents(path: String) throws(SigningKeyFileError) -> [UInt8] {
        func fail(_ reason: SigningKeyFileError.Reason) -> SigningKeyFileError {
            SigningKeyFileError(path: path, line: nil, reason: reason)
        }
        let descriptor = open(path, O_RDONLY | O_CLOEXEC)
        guard descriptor >= 0 else { throw fail(.cannotOpen(errno: errno)) }
        defer { close(descriptor) }
        var contents: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        defer { wipe(&chunk) }
        while true {
            let count = chunk.withUnsafeMutableBytes { systemRead(descriptor, $0.baseAddress, $0.count) }
            if count < 0 {
                if errno == EINTR { continue }
                let code = errno
                wipe(&contents)
                throw fail(.cannotRead(errno: code))
            }
            if count == 0 { return contents }
            contents.append(contentsOf: chunk[..<count])
            if contents.count > maximumSize {
                wipe(&contents)
                throw fail(.tooLarge)
            }
        }
    }

    private static func parseKey(
        fields: [ArraySlice<UInt8>], path: String, line: Int
    ) throws(SigningKeyFileError) -> SigningKey {
        func fail(_ reason: SigningKeyFileError.Reason) -> SigningKeyFileError {
            SigningKeyFileError(path: path, line: line, reason: reason)
        }
        guard fields.count == 3 else { throw fail(.wrongFieldCount(fields.count)) }
        let algorithm = String(decoding: fields[0], as: UTF8.self)
        guard algorithm == SigningKey.algorithm else { throw fail(.unsupportedAlgorithm(algorithm)) }
        let version = String(decoding: fields[1], as: UTF8.self)
        guard SigningKey.isValidVersion(version) else { throw fail(.invalidVersion(version)) }
        guard var seed = Base64.decode(String(decoding: fields[2], as: UTF8.self)) else {
            throw fail(.invalidBase64)
        }
        defer { wipe(&seed) }
        guard seed.count == SigningKey.seedCount else { throw fail(.seedLength(seed.count)) }
        do {
            return try SigningKey(seed: seed, version: version)
        } catch {
            throw fail(.invalidKey(error))
        }
    }
}

// `SigningKeyFile.read` and `write` shadow the C functions inside the enum.
private func systemWrite(_ descriptor: Int32, _ bytes: UnsafeRawPointer, _ count: Int) -> Int {
    write(descriptor, bytes, count)
}

private func systemRead(_ descriptor: Int32, _ bytes: UnsafeMutableRawPointer?, _ count: Int) -> Int {
    read(descriptor, bytes, count)
}

/// Why a signing-key file could not be read or written; names the path, the line and the rule broken.
public struct SigningKeyFileError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The rule that was broken.
    public enum Reason: Sendable, Equatable {
        case cannotOpen(errno: Int32)
        case cannotRead(errno: Int32)
        case tooLarge
        /// The file has no non-empty line.
        case noKey
        /// A key line must have exactly three whitespace-separated fields.
        case wrongFieldCount(Int)
        case unsupportedAlgorithm(String)
        case invalidVersion(String)
        /// The seed field is not base64.
        case invalidBase64
        /// The seed decoded to this many bytes instead of 32.
        case seedLength(Int)
        case invalidKey(SigningKeyError)
        case alreadyExists
        case cannotCreate(errno: Int32)
        case cannotWrite(errno: Int32)
    }

    public let path: String
    /// The 1-based line number, when the problem is on a line.
    public let line: Int?
    public let reason: Reason

    public var description: String {
        let location = line.map { "\(path) line \($0)" } ?? path
        return "signing key file \(location): \(reasonText)"
    }

    private var reasonText: String {
        switch reason {
        case .cannotOpen(let code):
            "cannot open it: \(Self.errorText(code))"
        case .cannotRead(let code):
            "cannot read it: \(Self.errorText(code))"
        case .tooLarge:
            "it is larger than \(SigningKeyFile.maximumSize) bytes, which no key file is"
        case .noKey:
            "it holds no key line; expected 'ed25519 <version> <base64 seed>'"
        case .wrongFieldCount(let count):
            "expected 3 fields 'ed25519 <version> <base64 seed>', found \(count)"
        case .unsupportedAlgorithm(let algorithm):
            "the algorithm \(String(reflecting: algorithm)) is not supported, only \"ed25519\" is"
        case .invalidVersion(let version):
            "the key version \(String(reflecting: version)) must match [A-Za-z0-9_]+"
        case .invalidBase64:
            "the seed is not valid base64"
        case .seedLength(let count):
            "the seed decodes to \(count) bytes, an Ed25519 seed is 32"
        case .invalidKey(let error):
            error.description
        case .alreadyExists:
            "it already exists, and a key file is never overwritten"
        case .cannotCreate(let code):
            "cannot create it: \(Self.errorText(code))"
        case .cannotWrite(let code):
            "cannot write it: \(Self.errorText(code))"
        }
    }

    private static func errorText(_ code: Int32) -> String {
        guard let text = strerror(code) else { return "errno \(code)" }
        return String(cString: text)
    }
}
