import Glibc
import NIOPosix
import Replication
import SouthbridgeDaemon

extension SouthbridgeCommand {
    /// `southbridge tail`: where to connect comes from `--connect` or from the config's `replication.listen`
    /// (and its secret from `replication.secret_file`); Ctrl-C ends it with status 0.
    static func tail(_ arguments: [String]) async {
        let streams: [ReplicationStream]
        switch option("--stream", in: arguments) {
        case nil: streams = ReplicationStream.allCases
        case let name?:
            guard let stream = ReplicationStream(rawValue: name) else {
                fail("--stream: must be federation or destinations, got \"\(name)\"", code: 2)
            }
            streams = [stream]
        }
        let from: ReplicationToken
        switch option("--from", in: arguments) {
        case nil, "NOW": from = .now
        case let text?:
            guard let token = Int64(text), token >= 0 else {
                fail("--from: must be NOW or a whole number, got \"\(text)\"", code: 2)
            }
            from = .after(token)
        }
        var secretFile = option("--secret-file", in: arguments)
        let listen: Configuration.ListenAddress
        if let connect = option("--connect", in: arguments) {
            do {
                listen = try Configuration.ListenAddress(parsing: connect)
            } catch {
                fail("--connect: \(error)", code: 2)
            }
        } else {
            let path = option("--config", in: arguments) ?? "/etc/southbridge/southbridge.toml"
            let configuration: Configuration
            do {
                configuration = try Configuration.load(path: path)
            } catch {
                fail("\(error)", code: 1)
            }
            guard let configured = configuration.replication.listen else {
                fail("\(path): replication.listen is \"\"; set it (and restart southbridge) to follow it", code: 1)
            }
            listen = configured
            secretFile = secretFile ?? configuration.replication.secretFile
        }
        var secret: String?
        if let secretFile {
            do {
                secret = String(decoding: try ReplicationSecret.read(path: secretFile), as: UTF8.self)
            } catch {
                fail("\(error)", code: 1)
            }
        }
        let address: ReplicationTail.Address
        switch listen {
        case .tcp(let host, let port):
            // A wildcard listen address is reached on loopback.
            address = .tcp(host: host == "0.0.0.0" ? "127.0.0.1" : host == "::" ? "::1" : host, port: port)
        case .unix(let path):
            address = .unix(path: path)
        }
        for signalNumber in [SIGINT, SIGTERM] {
            signal(signalNumber) { _ in _exit(0) }
        }
        let group = MultiThreadedEventLoopGroup(numberOfThreads: 1)
        await ReplicationTail(address: address, secret: secret, streams: streams, from: from).run(
            group: group, print: { writeLine($0, to: STDOUT_FILENO) }, report: { writeLine("tail: \($0)", to: STDERR_FILENO) })
    }

    /// Written at once, unbuffered: a line is out before the next row arrives or Ctrl-C ends the process.
    private static func writeLine(_ text: String, to descriptor: Int32) {
        var line = text + "\n"
        _ = line.withUTF8 { write(descriptor, $0.baseAddress, $0.count) }
    }
}
