import Glibc
import SouthbridgeSwarm
import SouthbridgeTestSupport

/// An `openssl s_server -www` child process on 127.0.0.1, a real TLS peer built by other people.
///
/// The server binds port 0 and the port is read back from its "ACCEPT 127.0.0.1:PORT" line, so
/// parallel tests never race for ports.
enum OpenSSLServerProcess {
    /// Runs `body` against a fresh s_server presenting `certificate`, and stops the server afterwards.
    static func with<Result>(
        certificate: (certificatePEM: String, privateKeyPEM: String),
        _ body: (_ port: Int) async throws -> Result
    ) async throws -> Result {
        try await with(certificate: certificate, options: []) { port, _ in try await body(port) }
    }

    /// The same with more s_server `options` ("-tls1_2", "-trace", ...); `body` also gets the
    /// server's output so far, each time it asks.
    static func with<Result>(
        certificate: (certificatePEM: String, privateKeyPEM: String),
        options: [String],
        _ body: (_ port: Int, _ output: () -> String) async throws -> Result
    ) async throws -> Result {
        let directory = try TemporaryDirectory()
        defer { directory.remove() }
        let certificatePath = try directory.write(certificate.certificatePEM, named: "server.pem")
        let keyPath = try directory.write(certificate.privateKeyPEM, named: "server.key")
        // Line-buffered, so what `-trace` prints is in the log by the time a handshake completes.
        let server = try ChildProcess(
            executable: "stdbuf",
            arguments: [
                "-oL", "openssl", "s_server", "-accept", "127.0.0.1:0", "-cert", certificatePath, "-key", keyPath,
                "-www",
            ] + options,
            logPath: directory.path + "/s_server.log")
        defer { server.stop() }
        return try await body(try await waitForAcceptLine(of: server), { server.output() })
    }

    /// Polls the output until s_server reports its listening address, failing fast if it exits.
    private static func waitForAcceptLine(of server: ChildProcess) async throws -> Int {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            let log = server.output()
            for line in log.split(separator: "\n") where line.hasPrefix("ACCEPT ") {
                if let colon = line.lastIndex(of: ":"), let port = Int(line[line.index(after: colon)...]) {
                    return port
                }
            }
            if await server.waitForExit(timeout: .zero) != nil {
                throw FixtureError("openssl s_server exited before listening: \(log)")
            }
            try await Task.sleep(for: .milliseconds(5))
        }
        throw FixtureError("openssl s_server did not report a listening port within 10 s: \(server.output())")
    }
}
