/// The bearer token the ingest API expects, from `ingest.token_file`.
enum IngestToken {
    /// The largest token file read: a token is a line; a file this large is a mistake.
    static let maximumFileSize = 65_536

    /// The file's content without surrounding whitespace; it must be printable ASCII without spaces.
    static func read(path: String) throws -> String {
        let bytes: [UInt8]
        do throws(FileContents.ReadError) {
            bytes = try FileContents.bytes(at: path, limit: maximumFileSize)
        } catch {
            throw DaemonStartError("ingest.token_file: cannot read \"\(path)\": \(error.reason)")
        }
        let token = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        guard !token.isEmpty else { throw DaemonStartError("ingest.token_file: \"\(path)\" is empty") }
        guard token.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw DaemonStartError("ingest.token_file: the token in \"\(path)\" must be printable ASCII without spaces")
        }
        return token
    }
}

/// The secret replication followers send with `AUTH`, from `replication.secret_file`: what the daemon expects
/// and what `southbridge tail` sends.
public enum ReplicationSecret {
    /// The file's content without surrounding whitespace; it must be printable ASCII without spaces, so that
    /// `AUTH <secret>` is one line.
    public static func read(path: String) throws -> [UInt8] {
        let bytes: [UInt8]
        do throws(FileContents.ReadError) {
            bytes = try FileContents.bytes(at: path, limit: IngestToken.maximumFileSize)
        } catch {
            throw DaemonStartError("replication.secret_file: cannot read \"\(path)\": \(error.reason)")
        }
        let secret = String(decoding: bytes, as: UTF8.self).trimmingWhitespace()
        guard !secret.isEmpty else { throw DaemonStartError("replication.secret_file: \"\(path)\" is empty") }
        guard secret.allSatisfy({ $0.isASCII && !$0.isWhitespace }) else {
            throw DaemonStartError("replication.secret_file: the secret in \"\(path)\" must be printable ASCII without spaces")
        }
        return Array(secret.utf8)
    }
}
