// swift-tools-version: 6.2
import PackageDescription

let package = Package(
    name: "southbridge",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "southbridge", targets: ["southbridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio.git", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
    ],
    targets: [
        .systemLibrary(name: "COpenSSL", path: "Sources/COpenSSL", pkgConfig: "openssl",
                       providers: [.apt(["libssl-dev"])]),
        .systemLibrary(name: "CSQLite", path: "Sources/CSQLite", pkgConfig: "sqlite3",
                       providers: [.apt(["libsqlite3-dev"])]),
        .systemLibrary(name: "CSystemd", path: "Sources/CSystemd", pkgConfig: "libsystemd",
                       providers: [.apt(["libsystemd-dev"])]),

        .target(name: "Federation", dependencies: ["COpenSSL"]),
        .target(name: "Outbox", dependencies: [
            "CSQLite", "Federation",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Resolver", dependencies: [
            "Federation",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Transport", dependencies: [
            "COpenSSL", "Federation", "Resolver",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Sender", dependencies: [
            "Federation", "Outbox", "Transport", "Resolver",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Ingest", dependencies: [
            "Federation", "Outbox",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Replication", dependencies: [
            "Federation", "Outbox",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "Systemd", dependencies: [
            "CSystemd",
            .product(name: "Logging", package: "swift-log"),
        ]),
        .target(name: "SouthbridgeDaemon", dependencies: [
            "Federation", "Outbox", "Resolver", "Transport", "Sender", "Ingest", "Replication", "Systemd",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
        ]),
        // Real fake homeservers and a throwaway CA, shared by the demo, tests and benchmarks.
        .target(name: "SouthbridgeSwarm", dependencies: [
            "COpenSSL", "Federation", "Transport",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        // What only tests and benchmarks use: launchers for nginx, dnsmasq and the daemon, faulty
        // peers, harnesses and a manual clock. The shipped binary does not link it.
        .target(name: "SouthbridgeTestSupport", dependencies: [
            "SouthbridgeSwarm", "Federation", "Outbox", "Transport", "Resolver", "Sender", "SouthbridgeDaemon", "Replication",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "southbridge", dependencies: [
            "SouthbridgeDaemon", "SouthbridgeSwarm", "Federation", "Outbox", "Replication", "Resolver", "Systemd",
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "Logging", package: "swift-log"),
        ], linkerSettings: [.unsafeFlags(["-use-ld=lld", "-Xlinker", "--no-export-dynamic",
                                          "-Xlinker", "-z", "-Xlinker", "pack-relative-relocs"])]),

        .executableTarget(name: "southbridge-benchmark", dependencies: [
            "SouthbridgeSwarm", "SouthbridgeTestSupport", "SouthbridgeDaemon", "Replication", "Resolver", "Transport",
            "Federation", "Outbox",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),

        // Seeded randomness and mutation of valid inputs, for the fuzz tests of every parser of
        // untrusted bytes and every other test that draws.
        .target(name: "FuzzSupport", path: "Tests/FuzzSupport"),

        .testTarget(name: "FederationTests", dependencies: ["Federation", "FuzzSupport"]),
        .testTarget(name: "OutboxTests", dependencies: ["Outbox", .product(name: "Logging", package: "swift-log")]),
        .testTarget(name: "TransportTests", dependencies: [
            "Transport", "SouthbridgeSwarm", "SouthbridgeTestSupport", "COpenSSL", "Federation", "Resolver", "FuzzSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOEmbedded", package: "swift-nio"),
        ]),
        .testTarget(name: "IngestTests", dependencies: ["Ingest", "Outbox", "Federation", "SouthbridgeSwarm",
                                                         "SouthbridgeTestSupport", "FuzzSupport",
                                                         .product(name: "Logging", package: "swift-log"),
                                                         .product(name: "NIOCore", package: "swift-nio"),
                                                         .product(name: "NIOPosix", package: "swift-nio")]),
        .testTarget(name: "ResolverTests", dependencies: [
            "Resolver", "Federation", "Transport", "SouthbridgeSwarm", "SouthbridgeTestSupport", "FuzzSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
        ]),
        .testTarget(name: "SenderTests", dependencies: ["Sender", "Federation", "Outbox", "Transport", "SouthbridgeSwarm",
                                                         "FuzzSupport"]),
        .testTarget(name: "ReplicationTests", dependencies: [
            "Replication", "Outbox", "Federation", "FuzzSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
        .testTarget(name: "SouthbridgeDaemonTests", dependencies: [
            "SouthbridgeDaemon", "SouthbridgeSwarm", "SouthbridgeTestSupport", "Replication", "Federation", "Outbox", "Sender",
            "Systemd", "Resolver", "FuzzSupport",
            .product(name: "Logging", package: "swift-log"),
            .product(name: "NIOConcurrencyHelpers", package: "swift-nio"),
            .product(name: "NIOHTTP1", package: "swift-nio"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "NIOPosix", package: "swift-nio"),
        ]),
    ],
    swiftLanguageModes: [.v6]
)
