import Federation
import Glibc
import Logging
import Outbox
import SouthbridgeDaemon
import Systemd

/// The version printed by `southbridge --version` and sent nowhere else.
let southbridgeVersion = "0.1.0"

let usage = """
    usage: southbridge <command> [options]

    commands:
      run --config PATH               run the daemon (systemd runs this)
      check-config --config PATH      check a config file; exit 1 with one line per problem
      check-storage --config PATH     check the outbox file (storage.path); exit 1 with one line per problem
      generate-signing-key PATH       write a new Ed25519 signing key in Synapse's format
      tail [--config PATH | --connect ADDRESS] [--stream federation|destinations] [--from TOKEN]
           [--secret-file PATH]       follow the replication endpoint, one line per row
      demo [--servers N] [--pdus N]   run southbridge against N local fake homeservers
      --version                       print the version

    """

@main
struct SouthbridgeCommand {
    static func main() async {
        useOneMallocArena()
        var arguments = Array(CommandLine.arguments.dropFirst())
        guard let command = arguments.first else {
            fail(usage, code: 2)
        }
        arguments.removeFirst()
        switch command {
        case "--version", "version":
            print("southbridge \(southbridgeVersion)")
        case "-h", "--help", "help":
            print(usage, terminator: "")
        case "check-config":
            let path = option("--config", in: arguments) ?? "/etc/southbridge/southbridge.toml"
            do {
                _ = try Configuration.load(path: path, refusingPlaceholder: true)
                print("\(path): ok")
            } catch {
                fail("\(error)", code: 1)
            }
        case "check-storage":
            checkStorage(configPath: option("--config", in: arguments) ?? "/etc/southbridge/southbridge.toml")
        case "run":
            let path = option("--config", in: arguments) ?? "/etc/southbridge/southbridge.toml"
            await run(configPath: path)
        case "generate-signing-key":
            guard let path = arguments.first, !path.hasPrefix("-") else {
                fail("generate-signing-key: give the path of the key file to create", code: 2)
            }
            do {
                let key = try SigningKey.generate(version: SigningKey.randomVersion())
                try SigningKeyFile.write(key, path: path)
                print("wrote \(key.keyID) to \(path); public key \(key.publicKeyBase64)")
            } catch {
                fail("generate-signing-key: \(error)", code: 1)
            }
        case "tail":
            await tail(arguments)
        case "demo":
            let servers = intOption("--servers", in: arguments, default: 20, range: 1...500)
            let pdus = intOption("--pdus", in: arguments, default: 1000, range: 1...1_000_000)
            do {
                try await Demo(serverCount: servers, pduCount: pdus).run()
            } catch {
                fail("demo: \(error)", code: 1)
            }
        default:
            fail("unknown command \"\(command)\"\n\(usage)", code: 2)
        }
    }

    static func run(configPath: String) async {
        let configuration: Configuration
        do {
            configuration = try Configuration.load(path: configPath, refusingPlaceholder: true)
        } catch {
            fail("\(error)", code: 1)
        }
        SouthbridgeLogging.bootstrap(level: Logger.Level(rawValue: configuration.log.level) ?? .info)
        let logger = Logger(label: "southbridge")
        do {
            let daemon = try await Daemon.start(configuration: configuration, logger: logger)
            try await daemon.run()
        } catch {
            logger.critical("southbridge cannot run", metadata: ["error": "\(error)"])
            exit(1)
        }
    }

    /// Has every thread allocate from glibc's main arena, unless `MALLOC_ARENA_MAX` is set.
    /// With an arena per thread (or two, as `MALLOC_ARENA_MAX=2` gave), each arena keeps the
    /// high-water mark of the threads that use it: the thread libdispatch adds to its pool a
    /// minute or two after start, whenever one of its threads blocks, brought a second copy of
    /// the connections' working set, 3–5 MiB that stayed (BENCHMARKS.md, "Soak"). First thing in
    /// `main`: glibc fixes its arena limit when a thread first makes an arena, and by the time
    /// `run` is reached one already has.
    static func useOneMallocArena() {
        guard getenv("MALLOC_ARENA_MAX") == nil else { return }
        let arenaMax: Int32 = -8 // M_ARENA_MAX in glibc's malloc.h
        _ = mallopt(arenaMax, 1)
    }

    /// Runs SQLite's integrity check and the outbox's own invariants on `storage.path`, beside a running daemon
    /// or not, and prints what the file holds and every problem found.
    static func checkStorage(configPath: String) {
        let path: String
        do {
            path = try Configuration.load(path: configPath).storage.path
        } catch {
            fail("\(error)", code: 1)
        }
        guard access(path, F_OK) == 0 else {
            fail("storage.path: \(path) does not exist (southbridge creates it at its first start)", code: 1)
        }
        do {
            let report = try OutboxCheck.run(path: path)
            print("\(path):")
            for line in report.contents { print("  \(line)") }
            guard report.isSound else {
                fail(report.problems.map { "problem: \($0)" }.joined(separator: "\n"), code: 1)
            }
            print("ok: integrity_check and the outbox's invariants hold")
        } catch {
            fail("storage.path: \(error)", code: 1)
        }
    }

    static func option(_ name: String, in arguments: [String]) -> String? {
        guard let index = arguments.firstIndex(of: name) else { return nil }
        guard index + 1 < arguments.count else { fail("\(name) needs a value", code: 2) }
        return arguments[index + 1]
    }

    static func intOption(_ name: String, in arguments: [String], default value: Int, range: ClosedRange<Int>) -> Int {
        guard let text = option(name, in: arguments) else { return value }
        guard let number = Int(text), range.contains(number) else {
            fail("\(name): must be a whole number from \(range.lowerBound) to \(range.upperBound), got \"\(text)\"", code: 2)
        }
        return number
    }

    static func fail(_ message: String, code: Int32) -> Never {
        var text = message.hasSuffix("\n") ? message : message + "\n"
        _ = text.withUTF8 { write(STDERR_FILENO, $0.baseAddress, $0.count) }
        exit(code)
    }
}

/// glibc's `mallopt` (malloc.h is not in the Glibc module).
@_silgen_name("mallopt")
private func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
