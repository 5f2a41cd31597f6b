import Federation
import NIOCore

/// `southbridge tail`: follows streams of the replication endpoint, prints one line per row, and reconnects by
/// itself with the last token of each stream, so a follower over a flaky link misses nothing.
public struct ReplicationTail: Sendable {
    public enum Address: Sendable {
        case tcp(host: String, port: Int)
        case unix(path: String)
    }

    public var address: Address
    public var secret: String?
    public var streams: [ReplicationStream]
    public var from: ReplicationToken
    /// A server silent this long (it pings every 5 s) is given up on and connected to again.
    public var silenceTimeout: Duration = .seconds(30)

    public init(address: Address, secret: String?, streams: [ReplicationStream], from: ReplicationToken) {
        self.address = address
        self.secret = secret
        self.streams = streams
        self.from = from
    }

    /// Runs until the task is cancelled; `print` gets each row's line, `report` what happened to the connection.
    public func run(group: any EventLoopGroup, print: @Sendable (String) -> Void, report: @Sendable (String) -> Void) async {
        var tokens = Dictionary(uniqueKeysWithValues: streams.map { ($0, from) })
        var retryDelay = Duration.seconds(1)
        while !Task.isCancelled {
            do {
                let client: ReplicationClient
                switch address {
                case .tcp(let host, let port): client = try await ReplicationClient.connect(host: host, port: port, group: group)
                case .unix(let path): client = try await ReplicationClient.connect(unixPath: path, group: group)
                }
                do {
                    try await follow(client, tokens: &tokens, retryDelay: &retryDelay, print: print, report: report)
                } catch {
                    await client.close()
                    throw error
                }
                await client.close()
                report("connection closed; reconnecting")
            } catch {
                report("cannot follow \(address): \(error); retrying in \(retryDelay)")
            }
            guard (try? await Task.sleep(for: retryDelay)) != nil else { return }
            retryDelay = min(retryDelay * 2, .seconds(30))
        }
    }

    /// One connection: asks for every stream from its token, prints rows and notes tokens until the connection
    /// closes or the server stays silent for `silenceTimeout`.
    private func follow(_ client: ReplicationClient, tokens: inout [ReplicationStream: ReplicationToken],
                        retryDelay: inout Duration, print: @Sendable (String) -> Void,
                        report: @Sendable (String) -> Void) async throws {
        if let secret { try await client.send("AUTH \(secret)") }
        try await client.send("NAME southbridge-tail")
        for stream in streams { try await client.send("REPLICATE \(stream) \(tokens[stream] ?? .now)") }
        while let line = try await client.nextLine(timeout: silenceTimeout) {
            retryDelay = .seconds(1)
            let fields = line.split(separator: " ", maxSplits: 3)
            switch fields.first {
            case "RDATA":
                if let stream = ReplicationStream(rawValue: String(fields[1])), let token = Int64(fields[2]) {
                    tokens[stream] = .after(token)
                }
                if let text = TailLine.describe(line) { print(TailLine.stamped(text, wallMS: WallClock.nowMS())) }
            case "POSITION":
                if fields.count == 3, let stream = ReplicationStream(rawValue: String(fields[1])), let token = Int64(fields[2]) {
                    tokens[stream] = .after(token)
                }
            case "ERROR":
                report("southbridge says: \(line.dropFirst(6))")
                // Another outbox behind the same address: start again from where it is.
                if line.contains("the token is ahead") { tokens = tokens.mapValues { _ in .now } }
            default:
                break
            }
        }
    }
}
