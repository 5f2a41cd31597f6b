import Glibc
import SouthbridgeSwarm

/// A real nginx (Debian's `nginx-light`) on 127.0.0.1: a TLS and HTTP/1.1 peer written by
/// other people, for integration tests and benchmarks.
///
/// Each `Site` becomes one `server` block on its own free port, presenting the site's
/// certificate with the site's `ssl_protocols` and `keepalive_requests`. Every site
/// answers the same routes:
///
/// - `/small`: the five bytes `hello`
/// - `/session-reused`: nginx's `$ssl_session_reused`, `r` for a resumed TLS session, `.` otherwise
/// - `/connection`: `$connection $connection_requests`, nginx's serial number of the TCP
///   connection and how many requests it has carried, this one included
/// - `/large`: `largeBodyBytes` bytes of `x` with a Content-Length
///
/// nginx runs as one process in the foreground (`daemon off; master_process off;`) with its
/// pid file, error log and temporary paths in a fresh directory, an access log off, and one
/// shared TLS session cache plus session tickets, so clients can resume. `start` returns once
/// every port accepts TCP connections; `stop()` ends nginx and removes the directory.
public final class NginxServer: Sendable {
    /// One `server` block.
    public struct Site: Sendable {
        /// Names the site in `port(of:)`.
        public var name: String
        public var certificatePEM: String
        public var privateKeyPEM: String
        /// nginx's `ssl_protocols` names: "TLSv1", "TLSv1.1", "TLSv1.2", "TLSv1.3".
        public var protocols: [String]
        /// How many requests one connection may carry before nginx closes it.
        public var keepaliveRequests: Int

        public init(
            name: String,
            certificate: (certificatePEM: String, privateKeyPEM: String),
            protocols: [String] = ["TLSv1.2", "TLSv1.3"],
            keepaliveRequests: Int = 1000
        ) {
            self.name = name
            self.certificatePEM = certificate.certificatePEM
            self.privateKeyPEM = certificate.privateKeyPEM
            self.protocols = protocols
            self.keepaliveRequests = keepaliveRequests
        }
    }

    /// The size of the `/large` body.
    public let largeBodyBytes: Int
    private let ports: [String: Int]
    private let directory: TemporaryDirectory
    private let process: ChildProcess

    private init(largeBodyBytes: Int, ports: [String: Int], directory: TemporaryDirectory, process: ChildProcess) {
        self.largeBodyBytes = largeBodyBytes
        self.ports = ports
        self.directory = directory
        self.process = process
    }

    /// The nginx binary Debian installs (`scripts/setup` installs `nginx-light`).
    public static let executable = "/usr/sbin/nginx"

    /// Starts nginx serving `sites`; if a port picked as free is taken before nginx binds it,
    /// new ports are picked and nginx starts again.
    ///
    /// - Parameter errorLogLevel: nginx's `error_log` level. At `info` (the default) every
    ///   failed handshake and closed connection is logged, which tests read; benchmarks pass
    ///   `error` so that nginx does not write a line per connection.
    public static func start(
        sites: [Site], largeBodyBytes: Int = 256 * 1024, errorLogLevel: String = "info"
    ) async throws -> NginxServer {
        precondition(!sites.isEmpty, "NginxServer needs at least one site")
        precondition(Set(sites.map(\.name)).count == sites.count, "NginxServer site names must be distinct")
        let directory = try TemporaryDirectory(prefix: "southbridge-nginx")
        do {
            try prepare(directory: directory, sites: sites, largeBodyBytes: largeBodyBytes)
            var lastError = ""
            for _ in 0..<5 {
                unlink(directory.path + "/nginx.pid")
                var ports: [String: Int] = [:]
                for site in sites { ports[site.name] = try LoopbackSocket.freePort(type: SOCK_STREAM) }
                try writeFile(
                    directory.path + "/nginx.conf",
                    configuration(directory: directory.path, sites: sites, ports: ports, errorLogLevel: errorLogLevel),
                    mode: 0o644)
                let process = try ChildProcess(
                    executable: executable,
                    arguments: [
                        "-p", directory.path, "-c", directory.path + "/nginx.conf", "-e", directory.path + "/error.log",
                    ],
                    logPath: directory.path + "/nginx.out")
                if await waitUntilAccepting(process: process, ports: Array(ports.values),
                                            pidFile: directory.path + "/nginx.pid") {
                    return NginxServer(
                        largeBodyBytes: largeBodyBytes, ports: ports, directory: directory, process: process)
                }
                lastError = process.output() + readFileText(directory.path + "/error.log")
                await process.terminate()
                guard lastError.contains("Address already in use") else { break }
            }
            throw NginxServerError("nginx did not start: \(lastError)")
        } catch {
            directory.remove()
            throw error
        }
    }

    /// The port the site called `name` listens on.
    public func port(of name: String) -> Int {
        guard let port = ports[name] else { preconditionFailure("NginxServer has no site called \(name)") }
        return port
    }

    /// nginx's process id, for measuring it.
    public var pid: pid_t { process.pid }

    /// What nginx wrote to its error log so far (handshake failures are logged at `info`).
    public func errorLog() -> String {
        readFileText(directory.path + "/error.log")
    }

    /// Stops nginx (SIGTERM, then waits for it) and removes its directory.
    public func stop() {
        process.stop()
        directory.remove()
    }

    private static func prepare(directory: TemporaryDirectory, sites: [Site], largeBodyBytes: Int) throws {
        for path in ["/www", "/temp"] {
            guard mkdir(directory.path + path, 0o755) == 0 else {
                throw NginxServerError("cannot create \(directory.path + path): \(String(cString: strerror(errno)))")
            }
        }
        try writeFile(directory.path + "/www/large", String(repeating: "x", count: largeBodyBytes), mode: 0o644)
        for site in sites {
            try writeFile(directory.path + "/\(site.name).crt", site.certificatePEM)
            try writeFile(directory.path + "/\(site.name).key", site.privateKeyPEM)
        }
    }

    private static func configuration(
        directory: String, sites: [Site], ports: [String: Int], errorLogLevel: String
    ) -> String {
        let servers = sites.map { site in
            // OpenSSL 3 allows TLS 1.0 and 1.1 (SHA-1 handshake signatures) only at security level 0.
            let legacyCiphers = site.protocols.contains { $0 == "TLSv1" || $0 == "TLSv1.1" }
                ? "        ssl_ciphers DEFAULT:@SECLEVEL=0;\n" : ""
            return """
                    server {
                        listen 127.0.0.1:\(ports[site.name]!) ssl;
                        ssl_certificate \(directory)/\(site.name).crt;
                        ssl_certificate_key \(directory)/\(site.name).key;
                        ssl_protocols \(site.protocols.joined(separator: " "));
                \(legacyCiphers)        keepalive_requests \(site.keepaliveRequests);
                        root \(directory)/www;
                        location = /small { return 200 "hello"; }
                        location = /session-reused { return 200 "$ssl_session_reused"; }
                        location = /connection { return 200 "$connection $connection_requests"; }
                        location = /large { }
                        location / { return 404; }
                    }

                """
        }
        return """
            daemon off;
            master_process off;
            worker_processes 1;
            pid \(directory)/nginx.pid;
            error_log \(directory)/error.log \(errorLogLevel);
            events { worker_connections 4096; }
            http {
                access_log off;
                default_type application/octet-stream;
                client_body_temp_path \(directory)/temp/body;
                proxy_temp_path \(directory)/temp/proxy;
                fastcgi_temp_path \(directory)/temp/fastcgi;
                uwsgi_temp_path \(directory)/temp/uwsgi;
                scgi_temp_path \(directory)/temp/scgi;
                ssl_session_cache shared:SSL:1m;
                ssl_session_tickets on;

            \(servers.joined())}

            """
    }

    /// Polls every port with a TCP connect until all accept; false if nginx exits or 10 s pass.
    /// Waits until nginx has written its pid file, which it does only once every listening
    /// socket is bound, and the ports accept. The ports alone are not enough: nginx retries a
    /// port it failed to bind for 2.5 s, and meanwhile another test's server may answer on it.
    private static func waitUntilAccepting(process: ChildProcess, ports: [Int], pidFile: String) async -> Bool {
        let deadline = ContinuousClock.now + .seconds(10)
        while ContinuousClock.now < deadline {
            if await process.waitForExit(timeout: .zero) != nil { return false }
            if access(pidFile, F_OK) == 0, ports.allSatisfy(acceptsConnections) {
                return await process.waitForExit(timeout: .zero) == nil
            }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return false
    }

    private static func acceptsConnections(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var address = LoopbackSocket.address(port: port)
        return withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
    }

}

/// nginx could not be set up or started; the text says why, with nginx's own output.
struct NginxServerError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
