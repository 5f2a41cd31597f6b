import Federation
import Glibc
import NIOCore
import NIOPosix

/// Turns a destination's server name into a `ResolvedFederationAddress`.
///
/// Covers the discovery steps that need no `.well-known` or SRV lookup: IP literals (step 1),
/// names with an explicit port (step 2) and plain names on port 8448 (step 6). Every
/// address is checked against the IP blocklist before it is returned, so no caller can
/// connect to a blocked range by accident. Blocking name lookups run on a thread pool,
/// never on an event loop.
public final class FederationResolver: Sendable {
    public static let defaultFederationPort = 8448

    private let threadPool: NIOThreadPool
    private let ipRangeAllowlist: [IPRange]

    public init(threadPool: NIOThreadPool, ipRangeAllowlist: [IPRange]) {
        self.threadPool = threadPool
        self.ipRangeAllowlist = ipRangeAllowlist
    }

    public func resolve(_ destination: ServerName) async throws(ResolutionError) -> ResolvedFederationAddress {
        let port = destination.port.map(Int.init) ?? Self.defaultFederationPort
        let hostHeader = destination.description
        switch destination.host {
        case .ipv4(let address), .ipv6(let address):
            let endpoints = try filterBlocked(host: address, addresses: [address], port: port)
            return ResolvedFederationAddress(
                destination: destination, hostHeader: hostHeader,
                certificateName: .ipAddress(address), endpoints: endpoints)
        case .dns(let hostname):
            let addresses = try await lookUpAddresses(hostname)
            let endpoints = try filterBlocked(host: hostname, addresses: addresses, port: port)
            return ResolvedFederationAddress(
                destination: destination, hostHeader: hostHeader,
                certificateName: .hostname(hostname), endpoints: endpoints)
        }
    }

    private func filterBlocked(host: String, addresses: [String], port: Int) throws(ResolutionError) -> [ResolvedFederationAddress.Endpoint] {
        var firstBlocked: (address: String, range: IPRange)?
        var endpoints: [ResolvedFederationAddress.Endpoint] = []
        for address in addresses {
            guard let bytes = IPRange.addressBytes(address) else { continue }
            if let range = IPRange.blockingRange(for: bytes, allowlist: ipRangeAllowlist) {
                if firstBlocked == nil { firstBlocked = (address, range) }
            } else {
                endpoints.append(.init(ipAddress: address, port: port))
            }
        }
        if endpoints.isEmpty, let blocked = firstBlocked {
            throw .allAddressesBlocked(host: host, address: blocked.address, range: blocked.range.description)
        }
        return endpoints
    }

    /// A/AAAA (and `/etc/hosts`) through the C library, IPv6 first as `getaddrinfo` orders them.
    private func lookUpAddresses(_ hostname: String) async throws(ResolutionError) -> [String] {
        let result: Result<[String], ResolutionError>
        do {
            result = try await threadPool.runIfActive { Self.getAddresses(hostname) }
        } catch {
            throw .noAddresses(host: hostname, reason: "resolver is shutting down")
        }
        return try result.get()
    }

    private static func getAddresses(_ hostname: String) -> Result<[String], ResolutionError> {
        var hints = addrinfo()
        hints.ai_socktype = Int32(SOCK_STREAM.rawValue)
        hints.ai_family = AF_UNSPEC
        var list: UnsafeMutablePointer<addrinfo>?
        let status = getaddrinfo(hostname, nil, &hints, &list)
        guard status == 0 else {
            return .failure(.noAddresses(host: hostname, reason: String(cString: gai_strerror(status))))
        }
        defer { freeaddrinfo(list) }
        var addresses: [String] = []
        var cursor = list
        while let entry = cursor {
            if let text = numericHost(entry.pointee), !addresses.contains(text) {
                addresses.append(text)
            }
            cursor = entry.pointee.ai_next
        }
        return addresses.isEmpty ? .failure(.noAddresses(host: hostname, reason: "no A or AAAA records")) : .success(addresses)
    }

    private static func numericHost(_ entry: addrinfo) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(NI_MAXHOST))
        let status = getnameinfo(entry.ai_addr, entry.ai_addrlen, &buffer, socklen_t(buffer.count), nil, 0, NI_NUMERICHOST)
        guard status == 0 else { return nil }
        return String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
