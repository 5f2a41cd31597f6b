import Federation
import NIOPosix
import Resolver
import Testing

@Suite("FederationResolver: IP literals, explicit ports, 8448, and the blocklist")
struct FederationResolverTests {
    private func resolve(_ name: String, allowlist: [String] = []) async throws -> ResolvedFederationAddress {
        let threadPool = NIOThreadPool(numberOfThreads: 1)
        threadPool.start()
        defer { threadPool.shutdownGracefully { _ in } }
        let resolver = FederationResolver(threadPool: threadPool,
                                          ipRangeAllowlist: try allowlist.map { try IPRange(parsing: $0) })
        return try await resolver.resolve(try ServerName(name))
    }

    @Test("public IP literals follow spec step 1", arguments: [
        ("1.2.3.4", "1.2.3.4", 8448, "1.2.3.4"),
        ("1.2.3.4:1234", "1.2.3.4", 1234, "1.2.3.4:1234"),
        ("[2001:db8:5678::abcd]", "2001:db8:5678::abcd", 8448, "[2001:db8:5678::abcd]"),
        ("[2001:db8:5678::abcd]:5678", "2001:db8:5678::abcd", 5678, "[2001:db8:5678::abcd]:5678"),
    ])
    func ipLiterals(name: String, ip: String, port: Int, host: String) async throws {
        // 2001:db8::/32 is documentation space, blocked by default; allow it to see the answer.
        let address = try await resolve(name, allowlist: ["2001:db8::/32"])
        #expect(address.endpoints == [.init(ipAddress: ip, port: port)])
        #expect(address.hostHeader == host)
        #expect(address.certificateName == .ipAddress(ip))
        #expect(address.destination.description == name)
    }

    @Test("a DNS name with a port resolves through the C library, /etc/hosts included (step 2)")
    func hostnameWithPort() async throws {
        let address = try await resolve("localhost:8449", allowlist: ["127.0.0.0/8", "::1/128"])
        #expect(address.hostHeader == "localhost:8449")
        #expect(address.certificateName == .hostname("localhost"))
        #expect(!address.endpoints.isEmpty)
        #expect(address.endpoints.allSatisfy { $0.port == 8449 })
    }

    @Test("a DNS name without a port goes to 8448 (step 6)")
    func hostnameWithoutPort() async throws {
        let address = try await resolve("localhost", allowlist: ["127.0.0.0/8", "::1/128"])
        #expect(address.endpoints.allSatisfy { $0.port == 8448 })
        #expect(address.hostHeader == "localhost")
    }

    @Test("loopback is refused unless network.ip_range_allowlist allows it, with the address and range named")
    func blocksLoopback() async throws {
        await #expect {
            _ = try await resolve("127.0.0.1:8448")
        } throws: { error in
            guard let error = error as? ResolutionError,
                  case .allAddressesBlocked(_, let address, let range) = error else { return false }
            return address == "127.0.0.1" && range == "127.0.0.0/8" && error.description.contains("network.ip_range_allowlist")
        }
        let allowed = try await resolve("127.0.0.1:8448", allowlist: ["127.0.0.0/8"])
        #expect(allowed.endpoints == [.init(ipAddress: "127.0.0.1", port: 8448)])
    }

    @Test("a name that does not exist fails with the name in the error")
    func unknownName() async throws {
        await #expect {
            _ = try await resolve("does-not-exist.invalid")
        } throws: { error in
            guard let error = error as? ResolutionError, case .noAddresses(let host, _) = error else { return false }
            return host == "does-not-exist.invalid"
        }
    }
}
