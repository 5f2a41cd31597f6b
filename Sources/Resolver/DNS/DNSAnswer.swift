/// What the DNS says about one (name, type): the unit the resolver caches.
enum DNSAnswer: Sendable, Hashable {
    /// The RRset of the asked type.
    case records([DNSRecordData])
    /// The name is an alias (CNAME) of another name; ask again for that one.
    case alias(String)
    /// NXDOMAIN: the name does not exist.
    case noSuchName
    /// NODATA: the name exists but has no records of this type.
    case noData

    var isNegative: Bool {
        switch self {
        case .noSuchName, .noData: true
        case .records, .alias: false
        }
    }
}

/// One thing a response establishes, with the TTL the server gave it; nil for a negative
/// answer without an SOA, which then lives for the configured default.
struct DNSLearnedAnswer: Sendable, Hashable {
    var name: String
    var answer: DNSAnswer
    var ttl: UInt32?
}

extension DNSResponse {
    /// What this response (NOERROR or NXDOMAIN) says about `name` and `type`: the first
    /// element is always about `name`; when `name` is an alias, each link of the CNAME chain
    /// found in the answer section follows, each with its own TTL, and then the end of the
    /// chain if the response says what it holds.
    func learnedAnswers(for name: String, type: DNSRecordType) -> [DNSLearnedAnswer] {
        var learned: [DNSLearnedAnswer] = []
        var current = name
        var visited: Set<String> = [name]
        while true {
            let records = answers.filter { $0.name == current && $0.data.type == type }
            if let ttl = records.map(\.ttl).min() {
                learned.append(DNSLearnedAnswer(name: current, answer: .records(records.map(\.data)), ttl: ttl))
                return learned
            }
            guard type != .cname,
                  let alias = answers.first(where: { $0.name == current && $0.data.type == .cname }),
                  case .cname(let target) = alias.data
            else { break }
            learned.append(DNSLearnedAnswer(name: current, answer: .alias(target), ttl: alias.ttl))
            // A loop, or a chain longer than the resolver follows, is left for its alias limit
            // to report; following thousands of links in a 64 KiB answer would only cost time
            // and fill the cache.
            guard visited.insert(target).inserted, learned.count <= DNSResolver.maximumAliases else { return learned }
            current = target
        }
        // RFC 6604: after a CNAME chain, the RCODE is about the last name. Without an SOA a
        // NOERROR response that stops at an alias is only a partial answer (a server that is
        // authoritative for the alias but not its target), so the target is asked for later.
        let negativeTTL = authority.lazy.compactMap { record -> UInt32? in
            guard case .soa(let soa) = record.data else { return nil }
            return min(record.ttl, soa.minimum)
        }.first
        if responseCode == .nameError {
            learned.append(DNSLearnedAnswer(name: current, answer: .noSuchName, ttl: negativeTTL))
        } else if current == name || negativeTTL != nil {
            learned.append(DNSLearnedAnswer(name: current, answer: .noData, ttl: negativeTTL))
        }
        return learned
    }
}
