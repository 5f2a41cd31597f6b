import Federation
import Glibc
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

/// The `southbridge` command line, run as a real process.
@Suite("southbridge command line")
struct CommandLineTests {
    private func run(_ arguments: [String]) async throws -> (code: Int32?, output: String, directory: TemporaryDirectory) {
        let directory = try TemporaryDirectory(prefix: "southbridge-cli")
        let child = try ChildProcess(executable: DaemonProcess.binaryPath, arguments: arguments.map {
            $0.replacing("$DIR", with: directory.path)
        }, logPath: directory.path + "/output.log")
        let code = await child.waitForExit(timeout: .seconds(120))
        if code == nil { await child.terminate() }
        return (code, child.output(), directory)
    }

    @Test func version() async throws {
        let result = try await run(["--version"])
        defer { result.directory.remove() }
        #expect(result.code == 0)
        #expect(result.output.hasPrefix("southbridge "))
    }

    @Test("check-config prints one line per problem and exits 1")
    func checkConfigReportsProblems() async throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-cli-config")
        defer { directory.remove() }
        try writeFile(directory.path + "/bad.toml", """
            [server]
            name = "example.org"
            [limits]
            max_connections = 0
            bogus = 1
            """)
        let child = try ChildProcess(executable: DaemonProcess.binaryPath,
                                     arguments: ["check-config", "--config", directory.path + "/bad.toml"],
                                     logPath: directory.path + "/output.log")
        #expect(await child.waitForExit(timeout: .seconds(30)) == 1)
        let lines = child.output().split(separator: "\n").map(String.init)
        #expect(lines.contains("line 4: limits.max_connections: must be between 1 and 65535, got 0"))
        #expect(lines.contains { $0.hasPrefix("line 5: limits.bogus:") })
    }

    @Test("run refuses to start, naming limits.max_connections, when the hard open-file limit is below what it needs")
    func openFileLimit() async throws {
        let fixture = try await DaemonProcess(destinations: 0)
        let command = "exec \(DaemonProcess.binaryPath) run --config \(fixture.configPath)"
        let refused = try ChildProcess(executable: "/bin/sh", arguments: ["-c", "ulimit -n 512 && " + command],
                                       logPath: fixture.directory.path + "/refused.log")
        let code = await refused.waitForExit(timeout: .seconds(30))
        let output = refused.output()
        await fixture.tearDown()
        #expect(code == 1)
        #expect(output.contains("limits.max_connections: 1024 connections need 1280 open files, but the hard limit is 512"),
                "\(output)")
    }

    @Test("check-config and run refuse the shipped configuration until server.name is set")
    func shippedFileNeedsServerName() async throws {
        let shipped = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/") + "/etc/southbridge/southbridge.toml"
        for command in ["check-config", "run"] {
            let refused = try await run([command, "--config", shipped])
            defer { refused.directory.remove() }
            #expect(refused.code == 1, "\(refused.output)")
            #expect(refused.output.contains("server.name: still the placeholder \"example.org\": set it to your homeserver's server name"),
                    "\(refused.output)")
        }
        let directory = try TemporaryDirectory(prefix: "southbridge-cli-config")
        defer { directory.remove() }
        let text = readFileText(shipped)
        try writeFile(directory.path + "/configured.toml", text.replacing("name = \"example.org\"", with: "name = \"matrix.example.net\""))
        let configured = try await run(["check-config", "--config", directory.path + "/configured.toml"])
        defer { configured.directory.remove() }
        #expect(configured.code == 0, "\(configured.output)")
    }

    @Test("generate-signing-key writes a Synapse-format key and refuses to overwrite it")
    func generateSigningKey() async throws {
        let first = try await run(["generate-signing-key", "$DIR/signing.key"])
        defer { first.directory.remove() }
        #expect(first.code == 0)
        let key = try SigningKeyFile.read(path: first.directory.path + "/signing.key")
        #expect(key.keyID.hasPrefix("ed25519:"))
        let child = try ChildProcess(executable: DaemonProcess.binaryPath,
                                     arguments: ["generate-signing-key", first.directory.path + "/signing.key"],
                                     logPath: first.directory.path + "/again.log")
        #expect(await child.waitForExit(timeout: .seconds(30)) == 1)
        #expect(try SigningKeyFile.read(path: first.directory.path + "/signing.key").publicKey == key.publicKey)
    }

    @Test("the demo delivers everything and prints a summary")
    func demo() async throws {
        let result = try await run(["demo", "--servers", "3", "--pdus", "40"])
        defer { result.directory.remove() }
        #expect(result.code == 0, "\(result.output)")
        #expect(result.output.contains("done: 120 PDU copies"))
        #expect(result.output.contains("signatures rejected by the fake servers: 0"))
    }

    @Test("an unknown command exits 2 with the usage")
    func unknownCommand() async throws {
        let result = try await run(["frobnicate"])
        defer { result.directory.remove() }
        #expect(result.code == 2)
        #expect(result.output.contains("usage: southbridge"))
    }
}
