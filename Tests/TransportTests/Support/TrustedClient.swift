import SouthbridgeSwarm
import Transport

/// A fresh test CA and a client context that trusts only that CA (through a CA file on disk).
struct TrustedClient {
    let authority: TestCertificateAuthority
    let context: TLSContext

    /// Runs `body` with a new CA and a client trusting it; the CA file is removed afterwards.
    static func with<Result>(_ body: (TrustedClient) async throws -> Result) async throws -> Result {
        let authority = try TestCertificateAuthority()
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let caFile = directory.path + "/ca.pem"
        try authority.writeCACertificate(to: caFile)
        let context = try TLSContext.client(caFile: caFile)
        return try await body(TrustedClient(authority: authority, context: context))
    }

    /// A server context presenting a certificate from this CA for "localhost" and 127.0.0.1.
    func serverContext(
        minimumVersion: TLSVersion = .tls12,
        maximumVersion: TLSVersion? = nil
    ) throws -> TLSContext {
        let issued = try authority.issue(dnsNames: ["localhost"], ipAddresses: ["127.0.0.1"])
        return try TLSContext.server(
            certificateChainPEM: issued.certificatePEM, privateKeyPEM: issued.privateKeyPEM,
            minimumVersion: minimumVersion, maximumVersion: maximumVersion)
    }
}
