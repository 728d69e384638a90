// swift-tools-version:6.2
import PackageDescription

// One set of strict settings for every Swift target (see ../shared/notes/swift-style-brief.md, rule 1).
let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
    .enableUpcomingFeature("MemberImportVisibility"),
    .enableUpcomingFeature("InternalImportsByDefault"),
    .enableUpcomingFeature("NonisolatedNonsendingByDefault"),
    .treatAllWarnings(as: .error),
]

let nioCore = Target.Dependency.product(name: "NIOCore", package: "swift-nio")
let nioPosix = Target.Dependency.product(name: "NIOPosix", package: "swift-nio")
let logging = Target.Dependency.product(name: "Logging", package: "swift-log")
let lifecycle = Target.Dependency.product(name: "ServiceLifecycle", package: "swift-service-lifecycle")
let argumentParser = Target.Dependency.product(name: "ArgumentParser", package: "swift-argument-parser")

let package = Package(
    name: "kindling",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "kindling", targets: ["kindling"]),
        .executable(name: "kindling-sim", targets: ["kindling-sim"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
    ],
    targets: [
        // C libraries from Debian, found through pkg-config.
        .systemLibrary(name: "CSodium", pkgConfig: "libsodium", providers: [.apt(["libsodium-dev"])]),
        .systemLibrary(name: "CZstd", pkgConfig: "libzstd", providers: [.apt(["libzstd-dev"])]),
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // GNU-only syscalls and the chunking inner loop, optimised even in debug builds so tests stay fast.
        .target(
            name: "CKindlingShims",
            cSettings: [.define("_GNU_SOURCE"), .unsafeFlags(["-O2"])]
        ),

        // Raw system calls (files beneath a directory, locks, resource limits, processes), errno as typed errors.
        .target(name: "KindlingSystem", dependencies: ["CKindlingShims"], swiftSettings: strict),
        // Hashes, signatures, key exchange and authenticated encryption (libsodium).
        .target(name: "KindlingCrypto", dependencies: ["CSodium"], swiftSettings: strict),
        // Content-defined chunking of byte streams (FastCDC).
        .target(name: "KindlingChunking", dependencies: ["KindlingCrypto", "CKindlingShims"], swiftSettings: strict),
        // Manifests, their canonical encoding and signatures, path rules, and the trust file.
        .target(name: "KindlingManifest", dependencies: ["KindlingCrypto", "KindlingSystem"], swiftSettings: strict),
        // The wire protocol: messages, framing, handshake and encryption (no sockets).
        .target(
            name: "KindlingWire", dependencies: ["KindlingManifest", "KindlingCrypto", nioCore], swiftSettings: strict),
        // The content-addressed chunk store: zstd chunk files plus an SQLite index of chunks, manifests and pins.
        .target(
            name: "KindlingStore",
            dependencies: ["KindlingSystem", "KindlingManifest", "KindlingCrypto", "CZstd", "CSQLite"],
            swiftSettings: strict
        ),
        // Capturing a directory tree into the store and materialising a manifest into a directory atomically.
        .target(
            name: "KindlingSnapshot",
            dependencies: ["KindlingSystem", "KindlingStore", "KindlingChunking", "KindlingManifest"],
            swiftSettings: strict
        ),
        // The mesh: connections, gossip, swarm downloads, serving, peer exchange.
        .target(
            name: "KindlingMesh",
            dependencies: [
                "KindlingSystem", "KindlingWire", "KindlingStore", "KindlingManifest", "KindlingCrypto", nioCore,
                nioPosix, logging,
            ],
            swiftSettings: strict
        ),
        // The long-running node: the mesh, the local control socket, configuration, store upkeep.
        .target(
            name: "KindlingNode",
            dependencies: [
                "KindlingMesh", "KindlingWire", "KindlingSnapshot", "KindlingStore", "KindlingManifest",
                "KindlingCrypto",
                "KindlingSystem", nioCore, nioPosix, logging, lifecycle,
                .product(name: "UnixSignals", package: "swift-service-lifecycle"),
            ],
            swiftSettings: strict
        ),
        // The cargo integration: build root, cache key, what of target/ to capture, ancestor search, freshness repair.
        .target(
            name: "KindlingCargo",
            dependencies: [
                "KindlingSystem", "KindlingSnapshot", "KindlingStore", "KindlingManifest", "KindlingCrypto",
            ],
            swiftSettings: strict
        ),
        // The `kindling` command line.
        .executableTarget(
            name: "kindling",
            dependencies: [
                "KindlingNode", "KindlingMesh", "KindlingCargo", "KindlingSnapshot", "KindlingStore",
                "KindlingManifest",
                "KindlingCrypto", "KindlingChunking", "KindlingWire", "KindlingSystem", argumentParser, logging,
            ],
            swiftSettings: strict
        ),
        // Benchmarks that need an in-process mesh (tools/bench/mesh.py runs the rest against processes).
        .executableTarget(
            name: "kindling-bench",
            dependencies: [
                "KindlingMesh", "KindlingSnapshot", "KindlingStore", "KindlingManifest", "KindlingCrypto", nioPosix,
                logging,
            ],
            swiftSettings: strict
        ),
        // The mesh simulator: N nodes' real mesh state machines on virtual time and modelled links (tools/sim).
        .target(
            name: "KindlingSimulation",
            dependencies: ["KindlingMesh", "KindlingWire", "KindlingManifest", "KindlingCrypto"],
            swiftSettings: strict
        ),
        .executableTarget(
            name: "kindling-sim", dependencies: ["KindlingSimulation", argumentParser], swiftSettings: strict),
        // Shared helpers for the test suites: temporary folders, fixed keys, running the built CLI.
        .target(
            name: "KindlingTesting",
            dependencies: [
                "KindlingSystem", "KindlingSnapshot", "KindlingStore", "KindlingManifest", "KindlingCrypto",
            ],
            swiftSettings: strict
        ),

        .testTarget(
            name: "KindlingSystemTests", dependencies: ["KindlingSystem", "KindlingTesting"], swiftSettings: strict),
        .testTarget(name: "KindlingCryptoTests", dependencies: ["KindlingCrypto"], swiftSettings: strict),
        .testTarget(
            name: "KindlingChunkingTests",
            dependencies: ["KindlingChunking", "KindlingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingManifestTests",
            dependencies: ["KindlingManifest", "KindlingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingStoreTests",
            dependencies: ["KindlingStore", "KindlingSystem", "KindlingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingSnapshotTests",
            dependencies: ["KindlingSnapshot", "KindlingSystem", "KindlingTesting"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingWireTests",
            dependencies: [
                "KindlingWire", "KindlingTesting", nioCore, .product(name: "NIOEmbedded", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingMeshTests",
            dependencies: [
                "KindlingMesh", "KindlingTesting", "KindlingSnapshot", "KindlingWire", nioCore, nioPosix, logging,
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingNodeTests",
            dependencies: [
                "KindlingNode", "KindlingMesh", "KindlingTesting", "KindlingSnapshot", "KindlingStore",
                "KindlingManifest",
                "KindlingCrypto", "KindlingWire", nioPosix, logging,
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingCargoTests",
            dependencies: [
                "KindlingTesting", "KindlingCargo", "KindlingSnapshot", "KindlingStore", "KindlingManifest",
                "KindlingCrypto", "kindling",
            ],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingSimulationTests",
            dependencies: ["KindlingSimulation", "KindlingTesting", "KindlingWire", "kindling-sim"],
            swiftSettings: strict
        ),
        .testTarget(
            name: "KindlingCLITests",
            dependencies: ["KindlingTesting", "KindlingManifest", "KindlingCrypto", "KindlingSystem", "kindling"],
            swiftSettings: strict
        ),
    ]
)

// The libFuzzer targets of tools/fuzz (Fuzz/README.md). Declared only when KINDLING_FUZZ=1, which tools/fuzz sets
// for its own build directory (.build-fuzz, built with -sanitize=fuzzer,address): libFuzzer supplies
// the program's main, so the executable cannot link in the normal build, which neither sees nor compiles it.
if Context.environment["KINDLING_FUZZ"] == "1" {
    package.targets.append(
        .executableTarget(
            name: "kindling-fuzz",
            dependencies: [
                "KindlingNode", "KindlingMesh", "KindlingWire", "KindlingManifest", "KindlingCrypto", nioCore,
            ],
            path: "Fuzz",
            swiftSettings: strict
        ))
    package.products.append(.executable(name: "kindling-fuzz", targets: ["kindling-fuzz"]))
}
