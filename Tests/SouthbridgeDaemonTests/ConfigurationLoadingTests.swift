#if canImport(Glibc)
import Glibc
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import SouthbridgeDaemon
import SouthbridgeSwarm

extension TemporaryDirectory {
    /// Writes the bytes to a new file in the directory and returns its path.
    func createFile(_ name: String, _ bytes: [UInt8]) throws -> String {
        let filePath = "\(path)/\(name)"
        let descriptor = open(filePath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o600)
        try #require(descriptor >= 0)
        defer { close(descriptor) }
        let written = bytes.withUnsafeBytes { write(descriptor, $0.baseAddress, $0.count) }
        try #require(written == bytes.count)
        return filePath
    }
}

/// The text of a file, read whole.
func readText(_ path: String) throws -> String {
    let descriptor = open(path, O_RDONLY | O_CLOEXEC)
    try #require(descriptor >= 0, "cannot open \(path)")
    defer { close(descriptor) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        let count = buffer.withUnsafeMutableBytes { read(descriptor, $0.baseAddress, $0.count) }
        try #require(count >= 0)
        if count == 0 { break }
        bytes += buffer[..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// etc/southbridge/southbridge.toml in this checkout.
let shippedConfigurationPath = "/" + #filePath.split(separator: "/").dropLast(3).joined(separator: "/")
    + "/etc/southbridge/southbridge.toml"

struct ConfigurationLoadingTests {
    @Test func loadsAFile() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        var expected = Configuration.withDefaults(serverName: "matrix.example.net")
        expected.limits.maxConnections = 12
        let path = try directory.createFile("southbridge.toml", Array(expected.renderTOML().utf8))
        #expect(try Configuration.load(path: path) == expected)
    }

    @Test func reportsProblemsOfALoadedFile() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        let path = try directory.createFile("bad.toml", Array("[server]\nname = \"example.org\"\n[limits]\nmax_connections = \"64\"\n".utf8))
        #expect(throws: ConfigurationError(source: path, problems: [
            ConfigurationError.Problem(line: 4, keyPath: "limits.max_connections", message: "expected an integer, got a string"),
        ])) {
            try Configuration.load(path: path)
        }
    }

    @Test func missingFile() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        let path = "\(directory.path)/absent.toml"
        #expect(throws: ConfigurationError(source: path, problems: [
            ConfigurationError.Problem(line: nil, keyPath: "", message: "cannot read \(path): No such file or directory"),
        ])) {
            try Configuration.load(path: path)
        }
    }

    @Test func directoryInsteadOfFile() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        #expect(throws: ConfigurationError(source: directory.path, problems: [
            ConfigurationError.Problem(line: nil, keyPath: "", message: "cannot read \(directory.path): Is a directory"),
        ])) {
            try Configuration.load(path: directory.path)
        }
    }

    @Test func fileThatIsNotUTF8() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        let path = try directory.createFile("latin1.toml", Array("[server]\nname = \"caf".utf8) + [0xE9] + Array("\"\n".utf8))
        #expect(throws: ConfigurationError(source: path, problems: [
            ConfigurationError.Problem(line: nil, keyPath: "", message: "\(path) is not valid UTF-8"),
        ])) {
            try Configuration.load(path: path)
        }
    }

    @Test func oversizedFile() throws {
        let directory = try TemporaryDirectory(prefix: "southbridge-config")
        defer { directory.remove() }
        let path = try directory.createFile("huge.toml", [UInt8](repeating: UInt8(ascii: "#"), count: Configuration.maximumFileSize + 1))
        #expect(throws: ConfigurationError(source: path, problems: [
            ConfigurationError.Problem(line: nil, keyPath: "",
                                       message: "cannot read \(path): the file is larger than \(Configuration.maximumFileSize) bytes"),
        ])) {
            try Configuration.load(path: path)
        }
    }

    @Test func shippedFileLoads() throws {
        #expect(try Configuration.load(path: shippedConfigurationPath) == Configuration.withDefaults(serverName: "example.org"))
    }

    @Test("the shipped file's server.name placeholder is refused on its line, and only the exact placeholder")
    func placeholderServerNameIsRefused() throws {
        let shipped = try String(decoding: FileContents.bytes(at: shippedConfigurationPath, limit: 1 << 20), as: UTF8.self)
        let line = try #require(shipped.split(separator: "\n", omittingEmptySubsequences: false)
            .firstIndex { $0.hasPrefix("name = ") }) + 1
        #expect(throws: ConfigurationError(source: shippedConfigurationPath, problems: [
            ConfigurationError.Problem(line: line, keyPath: "server.name",
                                       message: "still the placeholder \"example.org\": set it to your homeserver's "
                                           + "server name, the part after ':' in your users' IDs"),
        ])) {
            try Configuration.load(path: shippedConfigurationPath, refusingPlaceholder: true)
        }
        for name in ["matrix.example.org", "example.org:8448", "example.com"] {
            let configured = shipped.replacing("name = \"example.org\"", with: "name = \"\(name)\"")
            #expect(try Configuration.parse(configured, source: "configured", refusingPlaceholder: true).server.name == name)
        }
        // The placeholder is reported beside every other problem, so one pass fixes the file.
        do throws(ConfigurationError) {
            _ = try Configuration.parse("[server]\nname = \"example.org\"\n[limits]\nmax_connections = 0\n",
                                        source: "both", refusingPlaceholder: true)
            Issue.record("the placeholder and max_connections = 0 were accepted")
        } catch {
            #expect(error.problems.map(\.keyPath) == ["server.name", "limits.max_connections"])
        }
    }

    /// Lines of the shipped file, with `#key = value` lines uncommented when `key` belongs to the
    /// table they stand in; returns the text and the key paths found, in order.
    private func uncommentedShippedFile() throws -> (text: String, keys: [String], explained: [String]) {
        let knownKeys = Set(ConfigurationKey.all.map(\.path))
        var table = ""
        var keys: [String] = []
        var explained: [String] = []
        var previous = ""
        var lines: [String] = []
        for rawLine in try readText(shippedConfigurationPath).split(separator: "\n", omittingEmptySubsequences: false) {
            var line = String(rawLine)
            if line.hasPrefix("[") {
                table = String(line.dropFirst().dropLast())
            } else if let equals = line.firstRange(of: " = ") {
                let key = line[..<equals.lowerBound].drop { $0 == "#" }
                if knownKeys.contains("\(table).\(key)") {
                    line = String(line.drop { $0 == "#" })
                    keys.append("\(table).\(key)")
                    if previous.hasPrefix("# ") {
                        explained.append("\(table).\(key)")
                    }
                }
            }
            previous = line
            lines.append(line)
        }
        return (lines.joined(separator: "\n"), keys, explained)
    }

    @Test("southbridge(8) names every table and key under its table")
    func manualPageNamesEveryKey() throws {
        let manualPath = shippedConfigurationPath.replacing("etc/southbridge/southbridge.toml", with: "packaging/southbridge.8")
        let manual = String(decoding: try FileContents.bytes(at: manualPath, limit: 1 << 20), as: UTF8.self)
        // Each table is one ".B [table]" paragraph; its keys follow before the next one.
        let paragraphs = manual.split(separator: "\n.TP\n.B [").dropFirst()
            .map { (table: String($0.prefix { $0 != "]" }), text: String($0)) }
        for (table, keys) in Dictionary(grouping: ConfigurationKey.all, by: \.table) {
            let paragraph = try #require(paragraphs.first { $0.table == table }, "no [\(table)] in southbridge(8)")
            for key in keys {
                #expect(paragraph.text.contains(".B \(key.name)") || paragraph.text.contains(".BR \(key.name) "),
                        "southbridge(8) does not name \(key.path)")
            }
        }
    }

    @Test func shippedFileListsEveryKeyOnceWithAnExplanation() throws {
        let (_, keys, explained) = try uncommentedShippedFile()
        #expect(keys == ConfigurationKey.all.map(\.path))
        #expect(explained == keys)
    }

    @Test func shippedFileShowsTheTrueDefaults() throws {
        let (text, _, _) = try uncommentedShippedFile()
        #expect(try Configuration.parse(text, source: "uncommented") == Configuration.withDefaults(serverName: "example.org"))
    }
}
