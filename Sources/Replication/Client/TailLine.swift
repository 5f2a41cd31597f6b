import Federation

#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#endif

/// One readable line per row for `southbridge tail`: local time, stream and token, then the destination or room
/// and what happened.
public enum TailLine {
    /// The line for an `RDATA` row, without the time; nil for anything else.
    public static func describe(_ line: String) -> String? {
        let fields = line.split(separator: " ", maxSplits: 3, omittingEmptySubsequences: false)
        guard fields.count == 4, fields[0] == "RDATA",
              case .object(let row)? = try? JSONValue.parse(Array(fields[3].utf8)) else { return nil }
        let head = "\(fields[1]) \(fields[2])"
        func text(_ key: String) -> String? {
            if case .string(let value)? = row[key] { return value }
            return nil
        }
        func number(_ key: String) -> Int64 {
            if case .integer(let value)? = row[key] { return value }
            return 0
        }
        switch fields[1] {
        case "federation":
            let servers = number("destinations") == 1 ? "1 server" : "\(number("destinations")) servers"
            guard let kind = text("kind"), kind == "pdu" else {
                return "\(head)  \(text("kind") ?? "?") to \(servers)"
            }
            let event = text("event_id").map { " \($0)" } ?? ""
            return "\(head)  \(text("room_id") ?? "?")  pdu\(event) to \(servers)"
        case "destinations":
            let destination = text("destination") ?? "?"
            let delivered = "delivered up to \(number("last_successful_stream_ordering"))"
            switch text("state") {
            case "backoff":
                let failures = number("failure_count") == 1 ? "1 failure" : "\(number("failure_count")) failures"
                return "\(head)  \(destination)  backoff: retry in \(milliseconds(number("retry_interval_ms"))), \(failures), \(delivered)"
            case let state?:
                return "\(head)  \(destination)  \(state.replacing("_", with: " ")), \(delivered)"
            case nil:
                return "\(head)  \(destination)  ?"
            }
        default:
            return "\(head)  \(fields[3])"
        }
    }

    /// `line` behind the local time of `wallMS`, as `2026-12-07 14:02:03`.
    public static func stamped(_ line: String, wallMS: Int64) -> String {
        var seconds = time_t(wallMS / 1000)
        var parts = tm()
        localtime_r(&seconds, &parts)
        var buffer = [CChar](repeating: 0, count: 32)
        let length = strftime(&buffer, buffer.count, "%Y-%m-%d %H:%M:%S", &parts)
        return String(decoding: buffer[0..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self) + "  " + line
    }

    private static func milliseconds(_ value: Int64) -> String {
        value >= 60_000 ? "\(value / 60_000) min" : value >= 1_000 ? "\(value / 1_000) s" : "\(value) ms"
    }
}
