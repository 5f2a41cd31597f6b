import Federation

/// The answer of `.well-known` discovery for one host name, as step 3 of server discovery uses it.
///
/// Never an error: any invalid or missing answer is `none`, which sends discovery on to the SRV
/// step (spec step 4), with the reason kept for logs.
public enum WellKnownResult: Sendable, Equatable, CustomStringConvertible {
    /// A valid `m.server`: resolve it with steps 3.1–3.5, never through its own `.well-known`.
    case delegated(ServerName)
    /// No usable delegation; the failure names what was wrong.
    case none(reason: WellKnownFailure)

    public var description: String {
        switch self {
        case .delegated(let serverName): "delegated to \(serverName)"
        case .none(let reason): "no delegation: \(reason)"
        }
    }
}
