/// A command a follower sends, one per line (`NAME`, `PING`, `AUTH`, `REPLICATE`, `REMOTE_SERVER_UP`, `ERROR`).
public enum ClientCommand: Sendable, Equatable {
    case name(String)
    case ping(String)
    case auth(secret: String)
    /// `REPLICATE ALL <token>` asks for every stream from the same token.
    case replicate(ReplicationStream?, ReplicationToken)
    case remoteServerUp(String)
    case error(String)

    public var commandName: String {
        switch self {
        case .name: "NAME"
        case .ping: "PING"
        case .auth: "AUTH"
        case .replicate: "REPLICATE"
        case .remoteServerUp: "REMOTE_SERVER_UP"
        case .error: "ERROR"
        }
    }

    /// The longest line either side may send, newline excluded: Twisted's `MAX_LENGTH`, which the seeds' servers use.
    public static let maxLineBytes = 16_384

    /// Commands only the server sends.
    static let serverOnly: Set<String> = ["SERVER", "RDATA", "POSITION"]

    /// Parses one line (without its newline; a trailing `\r` is dropped). Blank lines are nil.
    public static func parse(_ bytes: some Collection<UInt8>) throws(ReplicationProtocolError) -> ClientCommand? {
        guard var line = String(validating: bytes, as: UTF8.self) else { throw .notUTF8 }
        if line.hasSuffix("\r") { line.removeLast() }
        if line.allSatisfy({ $0 == " " || $0 == "\t" }) { return nil }
        let name: Substring
        let rest: Substring
        if let space = line.firstIndex(of: " ") {
            name = line[..<space]
            rest = line[line.index(after: space)...]
        } else {
            name = line[...]
            rest = ""
        }
        func argument(_ usage: String) throws(ReplicationProtocolError) -> String {
            guard !rest.isEmpty else { throw .malformed(command: String(name), usage: usage, line: line) }
            return String(rest)
        }
        switch name {
        case "NAME": return .name(try argument("NAME <client name>"))
        case "PING": return .ping(try argument("PING <timestamp>"))
        case "AUTH": return .auth(secret: try argument("AUTH <secret>"))
        case "ERROR": return .error(try argument("ERROR <text>"))
        case "REMOTE_SERVER_UP":
            let server = try argument("REMOTE_SERVER_UP <server name>")
            guard !server.contains(" ") else {
                throw .malformed(command: "REMOTE_SERVER_UP", usage: "REMOTE_SERVER_UP <server name>", line: line)
            }
            return .remoteServerUp(server)
        case "REPLICATE":
            let usage = "REPLICATE <stream> <token>"
            let fields = rest.split(separator: " ", omittingEmptySubsequences: false)
            guard fields.count == 2, !fields[0].isEmpty, !fields[1].isEmpty else {
                throw .malformed(command: "REPLICATE", usage: usage, line: line)
            }
            let stream: ReplicationStream?
            if fields[0] == "ALL" {
                stream = nil
            } else if let known = ReplicationStream(rawValue: String(fields[0])) {
                stream = known
            } else {
                throw .unknownStream(String(fields[0]))
            }
            let token: ReplicationToken
            if fields[1] == "NOW" {
                token = .now
            } else if fields[1].utf8.allSatisfy({ $0 >= 0x30 && $0 <= 0x39 }), let number = Int64(fields[1]) {
                token = .after(number)
            } else {
                throw .badToken(stream: String(fields[0]), token: String(fields[1]))
            }
            return .replicate(stream, token)
        default:
            if serverOnly.contains(String(name)) { throw .serverCommand(String(name)) }
            throw .unknownCommand(String(name))
        }
    }
}

/// A command the server sends.
public enum ServerCommand: Sendable, Equatable {
    case server(String)
    case ping(Int64)
    /// `token` nil is `batch`: more rows with the same token follow, the last of them carries it.
    case rdata(ReplicationStream, token: Int64?, row: [UInt8])
    case position(ReplicationStream, Int64)
    case remoteServerUp(String)
    case error(String)

    public var commandName: String {
        switch self {
        case .server: "SERVER"
        case .ping: "PING"
        case .rdata: "RDATA"
        case .position: "POSITION"
        case .remoteServerUp: "REMOTE_SERVER_UP"
        case .error: "ERROR"
        }
    }

    /// The line on the wire, newline included.
    public var line: [UInt8] {
        var bytes: [UInt8] = []
        switch self {
        case .server(let name): bytes += "SERVER \(name)".utf8
        case .ping(let ms): bytes += "PING \(ms)".utf8
        case .rdata(let stream, let token, let row):
            bytes.reserveCapacity(row.count + 40)
            bytes += "RDATA \(stream.rawValue) \(token.map { "\($0)" } ?? "batch") ".utf8
            bytes += row
        case .position(let stream, let token): bytes += "POSITION \(stream.rawValue) \(token)".utf8
        case .remoteServerUp(let name): bytes += "REMOTE_SERVER_UP \(name)".utf8
        case .error(let text): bytes += "ERROR \(text)".utf8
        }
        bytes.append(0x0A)
        return bytes
    }
}
