import Federation
import Resolver
import Testing
@testable import SouthbridgeDaemon

/// The error description `Configuration.parse` gives for the text, or nil when it parses.
func configurationProblems(_ text: String) -> String? {
    do throws(ConfigurationError) {
        _ = try Configuration.parse(text, source: "test.toml")
        return nil
    } catch {
        #expect(error.source == "test.toml")
        return error.description
    }
}

/// A configuration file setting `server.name` and the given keys, as `table.key` and TOML
/// literal, and the line each key lands on.
func configurationDocument(_ entries: [(path: String, literal: String)]) -> (text: String, lines: [String: Int]) {
    var all = entries
    if !all.contains(where: { $0.path == "server.name" }) {
        all.insert(("server.name", "\"example.org\""), at: 0)
    }
    var tables: [String] = []
    var keysByTable: [String: [(String, String)]] = [:]
    for (path, literal) in all {
        let parts = path.split(separator: ".", maxSplits: 1).map(String.init)
        if keysByTable[parts[0]] == nil {
            tables.append(parts[0])
        }
        keysByTable[parts[0], default: []].append((parts[1], literal))
    }
    var text = ""
    var lines: [String: Int] = [:]
    var line = 0
    for table in tables {
        text += "[\(table)]\n"
        line += 1
        for (key, literal) in keysByTable[table]! {
            text += "\(key) = \(literal)\n"
            line += 1
            lines["\(table).\(key)"] = line
        }
    }
    return (text, lines)
}

struct ConfigurationTests {
    @Test func onlyTheServerNameIsRequired() throws {
        let configuration = try Configuration.parse("[server]\nname = \"example.org\"\n", source: "test.toml")
        #expect(configuration == Configuration.withDefaults(serverName: "example.org"))
        #expect(configuration.server.name == "example.org")
        #expect(configuration.server.signingKeyPath == "/etc/southbridge/signing.key")
        #expect(configuration.server.stopTimeout == .milliseconds(10_000))
        #expect(configuration.storage.path == "/var/lib/southbridge/outbox.sqlite3")
        #expect(configuration.ingest.listen == .tcp(host: "127.0.0.1", port: 8009))
        #expect(configuration.ingest.tokenFile == "/etc/southbridge/ingest.token")
        #expect(configuration.ingest.maxBodyBytes == 16_777_216)
        #expect(configuration.replication.listen == nil)
        #expect(configuration.tls.caFile == nil)
        #expect(configuration.network.ipRangeAllowlist.isEmpty)
        #expect(configuration.resolver.nameservers.isEmpty)
        #expect(configuration.limits.maxConnections == 1024)
        #expect(configuration.limits.maxTLSHandshakes == 4)
        #expect(configuration.limits.maxPDUsPerTransaction == 50)
        #expect(configuration.transport.connectTimeout == .milliseconds(10_000))
        #expect(configuration.transport.tlsHandshakeTimeout == .milliseconds(10_000))
        #expect(configuration.transport.requestTimeout == .milliseconds(60_000))
        #expect(configuration.transport.maxResponseBytes == 1_048_576)
        #expect(configuration.sender.retryInitialInterval == .seconds(600))
        #expect(configuration.sender.retryMultiplier == 2)
        #expect(configuration.sender.retryMaxInterval == .seconds(7 * 24 * 3600))
        #expect(configuration.log.level == "info")
    }

    @Test func missingServerName() {
        #expect(configurationProblems("") == "server.name: required key is missing")
        #expect(configurationProblems("[server]\n") == "server.name: required key is missing")
    }

    @Test func unknownKeysAndTables() {
        let text = """
            [server]
            name = "example.org"
            nmae = "example.org"
            [limits]
            max_conections = 10
            [srever]
            name = "x"
            [server.extra]
            """
        #expect(configurationProblems(text) == """
            line 3: server.nmae: unknown key
            line 5: limits.max_conections: unknown key
            line 6: srever: unknown table
            line 8: server.extra: unknown table
            """)
        #expect(configurationProblems("debug = true\n[server]\nname = \"example.org\"") == "line 1: debug: unknown key")
    }

    @Test func misspelledKeyIsNotMistakenForTheMissingOne() {
        #expect(configurationProblems("[server]\nnmae = \"example.org\"") == """
            line 2: server.nmae: unknown key
            server.name: required key is missing
            """)
    }

    @Test func tableThatIsNotATable() {
        #expect(configurationProblems("server = \"example.org\"") == "line 1: server: expected a table, got a string")
        #expect(configurationProblems("[server]\nname = \"example.org\"\n[limits]\n[sender]\nlimits = 3")
            == "line 5: sender.limits: unknown key")
    }

    static let typeMismatches: [(path: String, literal: String, message: String)] = [
        ("limits.max_connections", "\"64\"", "expected an integer, got a string"),
        ("sender.retry_multiplier", "2.0", "expected an integer, got a float"),
        ("transport.connect_timeout_ms", "true", "expected an integer, got a boolean"),
        ("limits.max_pdus_per_transaction", "[50]", "expected an integer, got an array"),
        ("server.name", "42", "expected a string, got an integer"),
        ("server.signing_key_path", "false", "expected a string, got a boolean"),
        ("ingest.listen", "8009", "expected a string, got an integer"),
        ("replication.listen", "false", "expected a string, got a boolean"),
        ("tls.ca_file", "[]", "expected a string, got an array"),
        ("log.level", "3", "expected a string, got an integer"),
        ("network.ip_range_allowlist", "\"10.0.0.0/8\"", "expected an array of strings, got a string"),
        ("resolver.nameservers", "\"192.0.2.53:53\"", "expected an array of strings, got a string"),
    ]

    @Test(arguments: typeMismatches)
    func typeMismatch(path: String, literal: String, message: String) {
        let (text, lines) = configurationDocument([(path, literal)])
        #expect(configurationProblems(text) == "line \(lines[path]!): \(path): \(message)")
    }

    @Test func collectsEveryProblem() {
        let text = """
            [server]
            name = "exa_mple.org"
            stop_timeout_ms = -1

            [limits]
            max_connections = 0
            max_tls_handshakes = "4"
            colour = "blue"

            [network]
            ip_range_allowlist = [
                "192.168.0.0/16",
                "10.0.0.0/33",
                7,
            ]

            [log]
            level = "verbose"
            """
        #expect(configurationProblems(text) == """
            line 2: server.name: "exa_mple.org" is not a valid server name: '_' is not allowed in a DNS name (letters, digits, '-' and '.' only)
            line 3: server.stop_timeout_ms: must be between 0 and 600000, got -1
            line 6: limits.max_connections: must be between 1 and 65535, got 0
            line 7: limits.max_tls_handshakes: expected an integer, got a string
            line 8: limits.colour: unknown key
            line 13: network.ip_range_allowlist[1]: "10.0.0.0/33" is not a valid CIDR range: prefix length must be 0-32
            line 14: network.ip_range_allowlist[2]: expected a string, got an integer
            line 18: log.level: must be one of trace, debug, info, notice, warning, error, critical, got "verbose"
            """)
    }

    @Test func errorKeepsProblemsAsValues() {
        do throws(ConfigurationError) {
            _ = try Configuration.parse("[limits]\nmax_connections = 0", source: "/etc/southbridge/southbridge.toml")
            Issue.record("parse accepted an invalid configuration")
        } catch {
            #expect(error.source == "/etc/southbridge/southbridge.toml")
            #expect(error.problems == [
                ConfigurationError.Problem(line: 2, keyPath: "limits.max_connections",
                                           message: "must be between 1 and 65535, got 0"),
                ConfigurationError.Problem(line: nil, keyPath: "server.name", message: "required key is missing"),
            ])
        }
    }

    @Test func syntaxErrorIsReportedWithItsLine() {
        let text = "[server]\nname = \"example.org\"\n\n[limits]\n# the cap\n\nmax_connections 64\n"
        #expect(configurationProblems(text) == "line 7: expected '=' after key \"max_connections\"")
    }

    @Test func maxTLSHandshakesMustNotExceedMaxConnections() {
        let both = configurationDocument([("limits.max_connections", "8"), ("limits.max_tls_handshakes", "9")])
        #expect(configurationProblems(both.text)
            == "line \(both.lines["limits.max_tls_handshakes"]!): limits.max_tls_handshakes: must be at most limits.max_connections (8), got 9")
        let onlyConnections = configurationDocument([("limits.max_connections", "2")])
        #expect(configurationProblems(onlyConnections.text)
            == "line \(onlyConnections.lines["limits.max_connections"]!): limits.max_connections: must be at least limits.max_tls_handshakes (4), got 2")
        let equal = configurationDocument([("limits.max_connections", "9"), ("limits.max_tls_handshakes", "9")])
        #expect(configurationProblems(equal.text) == nil)
    }

    @Test func retryMaxMustNotBeBelowRetryInitial() {
        let both = configurationDocument([("sender.retry_initial_ms", "5000"), ("sender.retry_max_ms", "4999")])
        #expect(configurationProblems(both.text)
            == "line \(both.lines["sender.retry_initial_ms"]!): sender.retry_initial_ms: must be at most sender.retry_max_ms (4999), got 5000")
        let onlyMax = configurationDocument([("sender.retry_max_ms", "1000")])
        #expect(configurationProblems(onlyMax.text)
            == "line \(onlyMax.lines["sender.retry_max_ms"]!): sender.retry_max_ms: must be at least sender.retry_initial_ms (600000), got 1000")
    }

    @Test func crossKeyCheckIsSkippedWhenAValueIsAlreadyRejected() {
        let (text, lines) = configurationDocument([("limits.max_connections", "0"), ("limits.max_tls_handshakes", "9")])
        #expect(configurationProblems(text)
            == "line \(lines["limits.max_connections"]!): limits.max_connections: must be between 1 and 65535, got 0")
    }

    static let serverNames: [(name: String, reason: String?)] = [
        ("matrix.org", nil), ("matrix.org:8888", nil), ("1.2.3.4", nil), ("1.2.3.4:1234", nil),
        ("[1234:5678::abcd]", nil), ("[1234:5678::abcd]:5678", nil), ("localhost", nil),
        ("example.org:65535", nil), ("xn--bcher-kva.example", nil), ("EXAMPLE.org", nil),
        ("", "it is empty"),
        ("exa_mple.org", "\"_\" is not allowed in a host name"),
        ("example.org:", "the port must be a number from 1 to 65535"),
        ("example.org:abc", "the port must be a number from 1 to 65535"),
        ("example.org:0", "the port must be a number from 1 to 65535"),
        ("example.org:65536", "the port must be a number from 1 to 65535"),
        ("example.org:123456", "the port must be a number from 1 to 65535"),
        ("[::1", "the IPv6 literal has no closing ']'"),
        ("[::1]x", "expected ':' and a port after ']'"),
        ("[1.2.3.4]", "\"1.2.3.4\" is not an IPv6 address"),
        ("::1", "an IPv6 address must be written in brackets, as in [::1]"),
        ("1.2.3.256", "\"1.2.3.256\" is not an IPv4 address"),
        ("example..org", "the host name has an empty label"),
        ("example.org.", "the host name has an empty label"),
        (":8448", "the host name is empty"),
        ("ex ample.org", "\" \" is not allowed in a host name"),
        (String(repeating: "a", count: 64) + ".org", "the host name has a label longer than 63 characters"),
        (String(repeating: "a.", count: 128) + "org", "the host name is longer than 255 characters"),
    ]

    /// The grammar itself is tested with Federation's `ServerName`; here, that the
    /// configuration applies it and reports its error on the key's line.
    @Test(arguments: serverNames)
    func validatesServerName(name: String, reason: String?) {
        let text = "[server]\nname = \(Configuration.quoted(name))\n"
        do {
            _ = try ServerName(name)
            #expect(reason == nil, "ServerName accepted \(name)")
            #expect(configurationProblems(text) == nil)
        } catch {
            #expect(reason != nil, "ServerName refused \(name): \(error)")
            #expect(configurationProblems(text) == "line 2: server.name: \(error)")
        }
    }

    static let listenAddresses: [(text: String, address: Configuration.ListenAddress)] = [
        ("127.0.0.1:8009", .tcp(host: "127.0.0.1", port: 8009)),
        ("0.0.0.0:0", .tcp(host: "0.0.0.0", port: 0)),
        ("localhost:65535", .tcp(host: "localhost", port: 65535)),
        ("[::1]:8009", .tcp(host: "::1", port: 8009)),
        ("[::]:9093", .tcp(host: "::", port: 9093)),
        ("unix:/run/southbridge/ingest.sock", .unix(path: "/run/southbridge/ingest.sock")),
    ]

    @Test(arguments: listenAddresses)
    func parsesListenAddress(text: String, address: Configuration.ListenAddress) throws {
        #expect(try Configuration.ListenAddress(parsing: text) == address)
        #expect(address.description == text)
    }

    @Test(arguments: ["127.0.0.1:8009", "127.1.2.3:0", "localhost:65535", "[::1]:8009", "unix:/run/southbridge/ingest.sock"])
    func ingestListensOnLoopback(text: String) throws {
        let configuration = try Configuration.parse(
            configurationDocument([("ingest.listen", Configuration.quoted(text))]).text, source: "test.toml")
        #expect(configuration.ingest.listen == (try Configuration.ListenAddress(parsing: text)))
    }

    @Test(arguments: ["0.0.0.0:8009", "[::]:8009", "192.168.1.2:8009", "example.org:8009"])
    func ingestRefusesNonLoopback(text: String) {
        let (document, lines) = configurationDocument([("ingest.listen", Configuration.quoted(text))])
        #expect(configurationProblems(document)
            == "line \(lines["ingest.listen"]!): ingest.listen: must be a loopback address (127.0.0.0/8, [::1], localhost) or unix:/path, got \(Configuration.quoted(text))")
    }

    static let invalidListenAddresses: [(text: String, reason: String)] = [
        ("", "expected host:port, [ipv6]:port or unix:/absolute/path"),
        ("127.0.0.1", "expected host:port, [ipv6]:port or unix:/absolute/path"),
        ("127.0.0.1:", "the port must be a number from 0 to 65535"),
        ("127.0.0.1:65536", "the port must be a number from 0 to 65535"),
        ("127.0.0.1:+80", "the port must be a number from 0 to 65535"),
        (":8009", "the host name is empty"),
        ("::1:8009", "an IPv6 address must be written in brackets, as in [::1]:8009"),
        ("[::1]", "expected ':' and a port after ']'"),
        ("[::1]:", "the port must be a number from 0 to 65535"),
        ("[::1:8009", "the IPv6 literal has no closing ']'"),
        ("[127.0.0.1]:8009", "\"127.0.0.1\" is not an IPv6 address"),
        ("127.0.0.300:8009", "\"127.0.0.300\" is not an IPv4 address"),
        ("local_host:8009", "\"_\" is not allowed in a host name"),
        ("unix:", "the socket path must be absolute"),
        ("unix:run/ingest.sock", "the socket path must be absolute"),
        ("unix:/" + String(repeating: "s", count: 107), "the socket path is longer than 107 bytes"),
    ]

    @Test(arguments: invalidListenAddresses)
    func rejectsListenAddress(text: String, reason: String) {
        let (document, lines) = configurationDocument([("ingest.listen", Configuration.quoted(text))])
        #expect(configurationProblems(document)
            == "line \(lines["ingest.listen"]!): ingest.listen: \(Configuration.quoted(text)) is not a valid listen address: \(reason)")
    }

    @Test func replicationListensOnLoopbackOrAUnixSocketWithoutASecret() throws {
        let disabled = configurationDocument([("replication.listen", "\"\"")]).text
        #expect(try Configuration.parse(disabled, source: "test.toml").replication.listen == nil)
        let unix = configurationDocument([("replication.listen", "\"unix:/run/southbridge/replication.sock\"")]).text
        #expect(try Configuration.parse(unix, source: "test.toml").replication.listen == .unix(path: "/run/southbridge/replication.sock"))
        let loopback = configurationDocument([("replication.listen", "\"127.0.0.1:9093\"")]).text
        #expect(try Configuration.parse(loopback, source: "test.toml").replication.listen == .tcp(host: "127.0.0.1", port: 9093))
        let (bad, lines) = configurationDocument([("replication.listen", "\"9093\"")])
        #expect(configurationProblems(bad) == "line \(lines["replication.listen"]!): replication.listen: \"9093\" is not a valid listen address: expected host:port, [ipv6]:port or unix:/absolute/path")
    }

    @Test func replicationBeyondLoopbackRequiresASecret() throws {
        let (open, lines) = configurationDocument([("replication.listen", "\"0.0.0.0:9093\"")])
        #expect(configurationProblems(open) == "line \(lines["replication.listen"]!): replication.secret_file: required when replication.listen is not a loopback address or a unix socket (it is \"0.0.0.0:9093\")")
        let guarded = configurationDocument([
            ("replication.listen", "\"0.0.0.0:9093\""), ("replication.secret_file", "\"/etc/southbridge/replication.secret\""),
        ]).text
        #expect(try Configuration.parse(guarded, source: "test.toml").replication.secretFile == "/etc/southbridge/replication.secret")
        let (relative, relativeLines) = configurationDocument([("replication.secret_file", "\"replication.secret\"")])
        #expect(configurationProblems(relative)?.hasPrefix("line \(relativeLines["replication.secret_file"]!): replication.secret_file: ") == true)
    }

    @Test func caFileIsOptionalButAbsolute() throws {
        let system = configurationDocument([("tls.ca_file", "\"\"")]).text
        #expect(try Configuration.parse(system, source: "test.toml").tls.caFile == nil)
        let file = configurationDocument([("tls.ca_file", "\"/etc/ssl/private-ca.pem\"")]).text
        #expect(try Configuration.parse(file, source: "test.toml").tls.caFile == "/etc/ssl/private-ca.pem")
        let relative = configurationDocument([("tls.ca_file", "\"ca.pem\"")])
        #expect(configurationProblems(relative.text)
            == "line \(relative.lines["tls.ca_file"]!): tls.ca_file: must be an absolute path, got \"ca.pem\"")
    }

    static let pathKeys = ["server.signing_key_path", "storage.path", "ingest.token_file"]

    @Test(arguments: pathKeys)
    func pathsMustBeAbsolute(path: String) {
        for literal in ["\"\"", "\"relative/file\""] {
            let (text, lines) = configurationDocument([(path, literal)])
            #expect(configurationProblems(text) == "line \(lines[path]!): \(path): must be an absolute path, got \(literal)")
        }
        let (text, lines) = configurationDocument([(path, "\"/a\\u0000b\"")])
        #expect(configurationProblems(text) == "line \(lines[path]!): \(path): must not contain a NUL character")
    }

    @Test func ipRangeAllowlist() throws {
        let (text, _) = configurationDocument([("network.ip_range_allowlist", "[\"192.168.1.0/24\", \"fd00::/8\", \"10.0.0.7\"]")])
        let configuration = try Configuration.parse(text, source: "test.toml")
        #expect(configuration.network.ipRangeAllowlist == [
            try IPRange(parsing: "192.168.1.0/24"), try IPRange(parsing: "fd00::/8"), try IPRange(parsing: "10.0.0.7/32"),
        ])
        let allowlistText = """
            [server]
            name = "example.org"

            [network]
            # LAN servers
            ip_range_allowlist = [
                "192.168.1.0/24",

                "10.0.0.0/33",
                "fe80::1/10",
            ]
            """
        #expect(configurationProblems(allowlistText) == """
            line 9: network.ip_range_allowlist[1]: "10.0.0.0/33" is not a valid CIDR range: prefix length must be 0-32
            line 10: network.ip_range_allowlist[2]: "fe80::1/10" is not a valid CIDR range: host bits are set; the network is fe80::/10
            """)
    }

    @Test func nameservers() throws {
        let (text, _) = configurationDocument([("resolver.nameservers", "[\"192.0.2.53:53\", \"[2001:db8::53]:5353\"]")])
        let nameservers = try Configuration.parse(text, source: "test.toml").resolver.nameservers
        #expect(nameservers.map(\.description) == ["192.0.2.53:53", "[2001:db8::53]:5353"])
        #expect(nameservers.first?.address == [192, 0, 2, 53])
        #expect(nameservers.first?.port == 53)
        #expect(nameservers.last?.address.count == 16)
    }

    static let invalidNameservers: [(text: String, reason: String)] = [
        ("192.0.2.53", "expected ip:port or [ipv6]:port"),
        ("192.0.2.53:0", "the port must be a number from 1 to 65535"),
        ("dns.example:53", "\"dns.example\" is not an IPv4 address"),
        ("2001:db8::53:53", "an IPv6 address must be written in brackets, as in [::1]:53"),
        ("[2001:db8::53]", "expected ':' and a port after ']'"),
        ("[192.0.2.53]:53", "\"192.0.2.53\" is not an IPv6 address"),
        ("[::1:53", "the IPv6 literal has no closing ']'"),
    ]

    @Test(arguments: invalidNameservers)
    func rejectsNameserver(text: String, reason: String) {
        let (document, lines) = configurationDocument([("resolver.nameservers", "[\"1.1.1.1:53\", \(Configuration.quoted(text))]")])
        #expect(configurationProblems(document)
            == "line \(lines["resolver.nameservers"]!): resolver.nameservers[1]: \(Configuration.quoted(text)) is not a valid nameserver address: \(reason)")
    }

    @Test(arguments: Configuration.LogSettings.levels)
    func acceptsLogLevel(level: String) throws {
        let text = configurationDocument([("log.level", Configuration.quoted(level))]).text
        #expect(try Configuration.parse(text, source: "test.toml").log.level == level)
    }

    @Test func rejectsLogLevelInOtherCase() {
        let (text, lines) = configurationDocument([("log.level", "\"INFO\"")])
        #expect(configurationProblems(text)
            == "line \(lines["log.level"]!): log.level: must be one of trace, debug, info, notice, warning, error, critical, got \"INFO\"")
    }

    @Test func renderedDefaultsRoundTrip() throws {
        let configuration = Configuration.withDefaults(serverName: "example.org")
        #expect(try Configuration.parse(configuration.renderTOML(), source: "rendered") == configuration)
    }

    @Test func renderedSettingsRoundTrip() throws {
        var configuration = Configuration.withDefaults(serverName: "[2001:db8::1]:8448")
        configuration.server.signingKeyPath = "/tmp/key with \"quotes\" and \\ backslash"
        configuration.server.stopTimeout = .zero
        configuration.storage.path = "/tmp/outbox.sqlite3"
        configuration.ingest.listen = .unix(path: "/run/southbridge/ingest.sock")
        configuration.ingest.tokenFile = "/tmp/token"
        configuration.ingest.maxBodyBytes = 1024
        configuration.replication.listen = .tcp(host: "192.0.2.7", port: 9093)
        configuration.replication.secretFile = "/tmp/replication.secret"
        configuration.replication.maxConnections = 2
        configuration.replication.pingInterval = .milliseconds(100)
        configuration.tls.caFile = "/tmp/ca.pem"
        configuration.network.ipRangeAllowlist = [try IPRange(parsing: "127.0.0.0/8"), try IPRange(parsing: "::1")]
        configuration.resolver.nameservers = [
            try Configuration.Nameserver(parsing: "127.0.0.1:5353"), try Configuration.Nameserver(parsing: "[::1]:53"),
        ]
        configuration.limits.maxConnections = 3
        configuration.limits.maxTLSHandshakes = 2
        configuration.limits.maxPDUsPerTransaction = 1
        configuration.transport.connectTimeout = .milliseconds(100)
        configuration.transport.tlsHandshakeTimeout = .milliseconds(250)
        configuration.transport.requestTimeout = .seconds(3600)
        configuration.transport.maxResponseBytes = 67_108_864
        configuration.sender.retryInitialInterval = .milliseconds(1)
        configuration.sender.retryMultiplier = 10
        configuration.sender.retryMaxInterval = .milliseconds(31_536_000_000)
        configuration.log.level = "trace"
        let rendered = configuration.renderTOML()
        #expect(try Configuration.parse(rendered, source: "rendered") == configuration)
        #expect(rendered.contains("listen = \"unix:/run/southbridge/ingest.sock\"\n"))
        #expect(rendered.contains("nameservers = [\"127.0.0.1:5353\", \"[::1]:53\"]\n"))
        #expect(rendered.contains("ip_range_allowlist = [\"127.0.0.0/8\", \"::1/128\"]\n"))
    }

    @Test func renderedFileListsEveryKeyUnderItsTableWithAnExplanation() {
        let lines = Configuration.withDefaults(serverName: "example.org").renderTOML().split(separator: "\n", omittingEmptySubsequences: false)
        var table = ""
        var found: [String] = []
        for (index, line) in lines.enumerated() {
            if line.hasPrefix("[") {
                table = String(line.dropFirst().dropLast())
            } else if !line.hasPrefix("#"), let equals = line.firstRange(of: " = ") {
                found.append("\(table).\(line[..<equals.lowerBound])")
                #expect(lines[index - 1].hasPrefix("# "))
            }
        }
        #expect(found == ConfigurationKey.all.map(\.path))
    }
}
