import Federation

/// Why a follower's line was refused; `description` is the text of the `ERROR` line it gets back.
public enum ReplicationProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    case notUTF8
    case unknownCommand(String)
    /// A command only the server sends (`SERVER`, `RDATA`, `POSITION`).
    case serverCommand(String)
    case malformed(command: String, usage: String, line: String)
    case unknownStream(String)
    case badToken(stream: String, token: String)
    case lineTooLong(limit: Int)

    public var description: String {
        switch self {
        case .notUTF8:
            "the line is not UTF-8"
        case .unknownCommand(let name):
            "unknown command \(quoted(name)); a client sends NAME, PING, AUTH, REPLICATE, REMOTE_SERVER_UP or ERROR"
        case .serverCommand(let name):
            "\(name) is sent by the server, not by a client"
        case .malformed(let command, let usage, let line):
            "\(command): expected \"\(usage)\", got \(quoted(line))"
        case .unknownStream(let name):
            "REPLICATE: unknown stream \(quoted(name)); the streams are \(ReplicationStream.names) and ALL"
        case .badToken(let stream, let token):
            "REPLICATE \(stream): the token must be NOW or a whole number, got \(quoted(token))"
        case .lineTooLong(let limit):
            "Line length exceeded: longer than \(limit) bytes"
        }
    }

    private func quoted(_ text: String) -> String {
        text.quotedExcerpt()
    }
}
