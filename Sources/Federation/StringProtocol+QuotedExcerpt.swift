extension StringProtocol {
    /// The text as an error message quotes untrusted input: in double quotes, with quotes,
    /// backslashes and control characters escaped as `String(reflecting:)` escapes them, and
    /// cut after `limit` Unicode scalars with "…" after the closing quote.
    ///
    /// Errors name what was wrong with a peer's input; quoting it whole would let the peer
    /// make the error, and the log line that carries it, as long as the input itself.
    public func quotedExcerpt(limit: Int = 100) -> String {
        let scalars = unicodeScalars
        let end = scalars.index(scalars.startIndex, offsetBy: limit, limitedBy: scalars.endIndex) ?? scalars.endIndex
        let quoted = String(reflecting: String(String.UnicodeScalarView(scalars[..<end])))
        return end == scalars.endIndex ? quoted : quoted + "…"
    }
}
