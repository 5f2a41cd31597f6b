import Federation
import Logging

/// Turns a destination's server name into a `ResolvedFederationAddress`, exactly as the
/// spec's "Resolving server names" says: IP literals (step 1), explicit ports (2),
/// `.well-known` delegation resolved once (3.1–3.5), SRV `_matrix-fed._tcp` then the
/// deprecated `_matrix._tcp` (4, 5), and A/AAAA on 8448 (6).
///
/// The `Host` header and the certificate name come from the server name or its
/// delegation, never from an SRV target. Every address is checked against the IP
/// blocklist before it is returned, so no caller can reach a blocked range by accident.
/// All DNS goes through `DNSResolver` and all `.well-known` fetches through
/// `WellKnownResolver`; both cache, so resolving a known name again costs no query.
public struct FederationResolver: Sendable {
    public static let defaultFederationPort = 8448
    static let serviceNames = ["_matrix-fed._tcp.", "_matrix._tcp."]

    let dns: DNSResolver
    let wellKnown: WellKnownResolver
    private let ipRangeAllowlist: [IPRange]
    private let logger: Logger

    public init(dns: DNSResolver, wellKnown: WellKnownResolver, ipRangeAllowlist: [IPRange], logger: Logger) {
        self.dns = dns
        self.wellKnown = wellKnown
        self.ipRangeAllowlist = ipRangeAllowlist
        self.logger = logger
    }

    public func resolve(_ destination: ServerName) async throws(ResolutionError) -> ResolvedFederationAddress {
        switch destination.host {
        case .ipv4(let address), .ipv6(let address):
            return try literal(destination, address: address, port: destination.port, hostHeader: destination.description)
        case .dns(let hostname):
            if let port = destination.port {
                return try await named(destination, hostname: hostname, port: Int(port), hostHeader: destination.description)
            }
            switch await wellKnown.delegatedServerName(for: hostname) {
            case .delegated(let delegated):
                return try await resolveDelegated(destination, to: delegated)
            case .none(let reason):
                logger.debug("no usable .well-known, trying SRV", metadata: [
                    "destination": "\(destination)", "reason": "\(reason)",
                ])
                return try await serviceOrDefault(destination, hostname: hostname)
            }
        }
    }

    /// Steps 3.1–3.5: the delegated name is resolved without another `.well-known`.
    private func resolveDelegated(_ destination: ServerName, to delegated: ServerName) async throws(ResolutionError) -> ResolvedFederationAddress {
        switch delegated.host {
        case .ipv4(let address), .ipv6(let address):
            return try literal(destination, address: address, port: delegated.port, hostHeader: delegated.description)
        case .dns(let hostname):
            if let port = delegated.port {
                return try await named(destination, hostname: hostname, port: Int(port), hostHeader: delegated.description)
            }
            return try await serviceOrDefault(destination, hostname: hostname)
        }
    }

    /// Steps 1 and 3.1: an IP literal, no DNS and no SNI.
    private func literal(_ destination: ServerName, address: String, port: UInt16?,
                         hostHeader: String) throws(ResolutionError) -> ResolvedFederationAddress {
        let endpoint = ResolvedFederationAddress.Endpoint(ipAddress: address, port: port.map(Int.init) ?? Self.defaultFederationPort)
        return ResolvedFederationAddress(
            destination: destination, hostHeader: hostHeader, certificateName: .ipAddress(address),
            endpoints: try allowed([endpoint], host: address))
    }

    /// Steps 2, 3.2, 3.5 and 6: A/AAAA of a name on a known port.
    private func named(_ destination: ServerName, hostname: String, port: Int,
                       hostHeader: String) async throws(ResolutionError) -> ResolvedFederationAddress {
        let endpoints = try await addresses(of: hostname).map { ResolvedFederationAddress.Endpoint(ipAddress: $0, port: port) }
        return ResolvedFederationAddress(
            destination: destination, hostHeader: hostHeader, certificateName: .hostname(hostname),
            endpoints: try allowed(endpoints, host: hostname))
    }

    /// Steps 3.3–3.5 and 4–6: SRV `_matrix-fed._tcp`, then `_matrix._tcp`, then port 8448.
    /// `Host` and the certificate stay `hostname` whatever the SRV target is.
    ///
    /// Only an answer that there is no such record (NXDOMAIN, NODATA, a "." target) moves on
    /// to the next step. A lookup that failed (timeout, SERVFAIL, REFUSED...) says nothing
    /// about the records: taking it for "none" would send the traffic to a port that may be
    /// another server's, or nobody's. The resolution fails instead, like an A/AAAA lookup
    /// that gets no answer, and the destination is tried again after its backoff.
    private func serviceOrDefault(_ destination: ServerName, hostname: String) async throws(ResolutionError) -> ResolvedFederationAddress {
        for service in Self.serviceNames {
            let serviceName = service + hostname
            let records: [SRVRecord]
            do {
                records = try await dns.serviceRecords(serviceName)
            } catch .invalidName(_, let reason) {
                // A server name near the 255-byte limit leaves no room for the prefix: no
                // record can have this name.
                logger.debug("SRV name cannot exist", metadata: ["destination": "\(destination)", "reason": "\(reason)"])
                continue
            } catch {
                throw ResolutionError(error, host: serviceName)
            }
            guard !records.isEmpty else { continue }
            var generator = SystemRandomNumberGenerator()
            var endpoints: [ResolvedFederationAddress.Endpoint] = []
            var lastError: ResolutionError?
            for record in DNSResolver.orderForConnection(records, using: &generator) {
                do {
                    for address in try await addresses(ofServiceTarget: record.target) {
                        endpoints.append(.init(ipAddress: address, port: Int(record.port)))
                    }
                } catch {
                    lastError = error
                }
            }
            if endpoints.isEmpty, let lastError { throw lastError }
            return ResolvedFederationAddress(
                destination: destination, hostHeader: hostname, certificateName: .hostname(hostname),
                endpoints: try allowed(endpoints, host: hostname))
        }
        return try await named(destination, hostname: hostname, port: Self.defaultFederationPort, hostHeader: hostname)
    }

    private func addresses(of hostname: String) async throws(ResolutionError) -> [String] {
        do {
            return try await dns.addresses(for: hostname)
        } catch {
            throw ResolutionError(error, host: hostname)
        }
    }

    /// An SRV target that is a CNAME is unusable (RFC 2782); the other targets are tried.
    private func addresses(ofServiceTarget target: String) async throws(ResolutionError) -> [String] {
        do {
            return try await dns.addresses(ofServiceTarget: target)
        } catch {
            throw ResolutionError(error, host: target)
        }
    }

    private func allowed(_ endpoints: [ResolvedFederationAddress.Endpoint],
                         host: String) throws(ResolutionError) -> [ResolvedFederationAddress.Endpoint] {
        var firstBlocked: (address: String, range: IPRange)?
        var kept: [ResolvedFederationAddress.Endpoint] = []
        for endpoint in endpoints {
            guard let bytes = IPRange.addressBytes(endpoint.ipAddress) else { continue }
            if let range = IPRange.blockingRange(for: bytes, allowlist: ipRangeAllowlist) {
                if firstBlocked == nil { firstBlocked = (endpoint.ipAddress, range) }
            } else {
                kept.append(endpoint)
            }
        }
        if kept.isEmpty, let blocked = firstBlocked {
            throw .allAddressesBlocked(host: host, address: blocked.address, range: blocked.range.description)
        }
        return kept
    }
}
