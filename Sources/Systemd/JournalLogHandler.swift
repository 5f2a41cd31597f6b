import CSystemd
import Glibc
import Logging

/// Writes each log line to journald with its metadata as journal fields, so that
/// `journalctl -u southbridge DESTINATION=example.org` finds every line about one server.
///
/// Metadata keys become upper-case field names (`txn_id` → `TXN_ID`); the message goes to
/// `MESSAGE`, the level to `PRIORITY`. Used when systemd connected stderr to the journal
/// (`JOURNAL_STREAM` is set); otherwise `StderrLogHandler` prints the same content as text.
public struct JournalLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level
    private let label: String

    public init(label: String, level: Logger.Level) {
        self.label = label
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var fields = [
            "MESSAGE=\(event.message)",
            "PRIORITY=\(Self.syslogPriority(event.level))",
            "SYSLOG_IDENTIFIER=southbridge",
            "LOGGER=\(label)",
        ]
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        for (key, value) in merged {
            fields.append("\(Self.fieldName(key))=\(value)")
        }
        // One contiguous buffer, one iovec per field pointing into it.
        var storage: [UInt8] = []
        var ranges: [Range<Int>] = []
        for field in fields {
            let start = storage.count
            storage.append(contentsOf: field.utf8)
            ranges.append(start..<storage.count)
        }
        storage.withUnsafeMutableBytes { raw in
            let iovecs = ranges.map { iovec(iov_base: raw.baseAddress! + $0.lowerBound, iov_len: $0.count) }
            _ = iovecs.withUnsafeBufferPointer { sd_journal_sendv($0.baseAddress, Int32($0.count)) }
        }
    }

    static func fieldName(_ key: String) -> String {
        var name = String(key.uppercased().map { $0.isLetter || $0.isNumber ? $0 : "_" })
        if name.first.map({ $0.isNumber || $0 == "_" }) ?? true { name = "F" + name }
        return name
    }

    static func syslogPriority(_ level: Logger.Level) -> Int {
        switch level {
        case .trace, .debug: 7
        case .info: 6
        case .notice: 5
        case .warning: 4
        case .error: 3
        case .critical: 2
        }
    }
}
