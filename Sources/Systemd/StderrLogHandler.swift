import Glibc
import Logging

/// Prints one `level message key=value …` line per event to standard error.
///
/// The format is logfmt-like so that lines stay greppable when southbridge runs in a terminal
/// or under a supervisor without a journal.
public struct StderrLogHandler: LogHandler {
    public var metadata: Logger.Metadata = [:]
    public var logLevel: Logger.Level

    public init(label: String, level: Logger.Level) {
        self.logLevel = level
    }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        var merged = metadata
        if let extra = event.metadata { merged.merge(extra) { $1 } }
        var line = "\(event.level) \(event.message)"
        for key in merged.keys.sorted() {
            let value = "\(merged[key]!)"
            let needsQuotes = value.isEmpty || value.contains(where: { $0 == " " || $0 == "\"" || $0 == "=" })
            line += " \(key)=" + (needsQuotes ? "\"\(value.replacing("\"", with: "\\\""))\"" : value)
        }
        line += "\n"
        var bytes = Array(line.utf8)
        // One write(2) per line keeps lines from concurrent threads whole.
        _ = bytes.withUnsafeMutableBytes { write(STDERR_FILENO, $0.baseAddress, $0.count) }
    }
}

/// Bootstraps swift-log once for the process: journald fields under systemd, text otherwise.
public enum SouthbridgeLogging {
    public static func bootstrap(level: Logger.Level) {
        let toJournal = getenv("JOURNAL_STREAM") != nil
        LoggingSystem.bootstrap { label in
            toJournal
                ? AnyLogHandler(JournalLogHandler(label: label, level: level))
                : AnyLogHandler(StderrLogHandler(label: label, level: level))
        }
    }
}

/// Lets the bootstrap closure return either handler.
struct AnyLogHandler: LogHandler {
    private var wrapped: any LogHandler
    init(_ wrapped: any LogHandler) { self.wrapped = wrapped }
    var metadata: Logger.Metadata {
        get { wrapped.metadata }
        set { wrapped.metadata = newValue }
    }
    var logLevel: Logger.Level {
        get { wrapped.logLevel }
        set { wrapped.logLevel = newValue }
    }
    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { wrapped[metadataKey: key] }
        set { wrapped[metadataKey: key] = newValue }
    }
    func log(event: LogEvent) { wrapped.log(event: event) }
}
