import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import Synchronization
import Testing

@testable import KindlingCargo

/// A one-crate repository with no dependencies and a build script that writes what it saw into its OUT_DIR: the
/// names of its environment variables (`env.txt`) and, when `MINI_WHO` is set, the build root's base as it looked
/// after leaving a marker there and waiting (`seen.txt`). Small, so that each test builds in seconds.
struct MiniRepository {
    static let name = "test/mini"
    static func repository() throws -> RepositoryName { try RepositoryName(name) }
    static let buildScript = """
        use std::{env, fs, path::Path};
        fn main() {
            let out = env::var("OUT_DIR").unwrap();
            let mut names: Vec<String> = env::vars().map(|(k, _)| k).collect();
            names.sort();
            fs::write(Path::new(&out).join("env.txt"), names.join("\\n")).unwrap();
            if let Ok(who) = env::var("MINI_WHO") {
                let manifest = env::var("CARGO_MANIFEST_DIR").unwrap();
                let base = Path::new(&manifest).parent().unwrap().parent().unwrap();
                fs::write(base.join(format!("marker-{}", who)), "x").unwrap();
                std::thread::sleep(std::time::Duration::from_secs(3));
                let mut seen: Vec<String> = fs::read_dir(base).unwrap()
                    .map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
                seen.sort();
                fs::write(Path::new(&out).join("seen.txt"), format!("{}\\n{}", manifest, seen.join(","))).unwrap();
            }
            if let Ok(probe) = fs::read_to_string("probe.txt") {
                let verdict = if fs::read(probe.trim()).is_ok() { "readable" } else { "denied" };
                fs::write(Path::new(&out).join("probe.txt"), verdict).unwrap();
            }
            println!("cargo:rerun-if-changed=build.rs");
        }
        """

    /// Creates the origin repository at `path`.
    static func create(at path: String) throws {
        try FileManager.default.createDirectory(atPath: path + "/src", withIntermediateDirectories: true)
        try "[package]\nname = \"mini\"\nversion = \"0.1.0\"\nedition = \"2021\"\n"
            .write(toFile: path + "/Cargo.toml", atomically: true, encoding: .utf8)
        try "fn main() { println!(\"mini\"); }\n"
            .write(toFile: path + "/src/main.rs", atomically: true, encoding: .utf8)
        try buildScript.write(toFile: path + "/build.rs", atomically: true, encoding: .utf8)
        try "/target\n".write(toFile: path + "/.gitignore", atomically: true, encoding: .utf8)
        let lock = try CommandRunner.run("/usr/bin/env", ["cargo", "generate-lockfile", "--offline"], directory: path)
        guard lock.status == 0 else { throw WorldError.failed("cargo generate-lockfile", lock) }
        try git(["init", "-q"], in: path)
        try git(["add", "-A"], in: path)
        try git(["commit", "-q", "-m", "mini"], in: path)
    }

    @discardableResult
    static func git(_ arguments: [String], in directory: String) throws -> CommandResult {
        let result = try CommandRunner.run(
            "/usr/bin/git", ["-c", "user.name=test", "-c", "user.email=test@example.invalid"] + arguments,
            directory: directory)
        guard result.status == 0 else { throw WorldError.failed("git \(arguments.joined(separator: " "))", result) }
        return result
    }

    static func clone(_ origin: String, to path: String) throws {
        try git(["clone", "-q", origin, path], in: URL(fileURLWithPath: path).deletingLastPathComponent().path)
    }

    /// A file the build script wrote into its OUT_DIR, from the newest build of `target`.
    static func outFile(_ name: String, target: String) -> String? {
        let build = target + "/debug/build"
        let folders = (try? FileManager.default.contentsOfDirectory(atPath: build)) ?? []
        for folder in folders where folder.hasPrefix("mini-") {
            if let text = try? String(contentsOfFile: build + "/" + folder + "/out/" + name, encoding: .utf8) {
                return text
            }
        }
        return nil
    }
}

@Suite("Cargo: containment of the build (planted config, toolchains, keys, two users)")
struct CargoBuildContainmentTests {
    static var namespaces: Bool { CargoLauncher.namespacesAvailable }

    @Test("A .cargo/config.toml planted in a world-writable build-root base: unseen in the namespace, refused in place")
    func plantedConfig() throws {
        let directory = TemporaryDirectory("planted")
        let shared = directory.file("shared")
        try FileManager.default.createDirectory(atPath: shared + "/.cargo", withIntermediateDirectories: true)
        chmod(shared, 0o1777)
        let marker = directory.file("wrapper-ran")
        let wrapper = directory.file("wrapper.sh")
        try "#!/bin/sh\ntouch '\(marker)'\nexec \"$@\"\n".write(toFile: wrapper, atomically: true, encoding: .utf8)
        chmod(wrapper, 0o755)
        let config = shared + "/.cargo/config.toml"
        try "[build]\nrustc-wrapper = \"\(wrapper)\"\n".write(toFile: config, atomically: true, encoding: .utf8)
        // Planted by another user: nobody owns the folder and the file.
        chown(shared + "/.cargo", 65534, 65534)
        chown(config, 65534, 65534)
        try MiniRepository.create(at: directory.file("origin"))
        let checkout = shared + "/dev"
        try MiniRepository.clone(directory.file("origin"), to: checkout)
        let environment = [
            "KINDLING_BUILD_ROOT": shared + "/roots", "KINDLING_REPO": MiniRepository.name, "KINDLING_NO_RESTORE": "1",
            "KINDLING_HOME": directory.file("store"),
        ]

        if Self.namespaces {
            let built = try CommandRunner.kindling(
                ["cargo", "build", "-q"], environment: environment, directory: checkout)
            #expect(built.status == 0, "\(built)")
            #expect(!FileManager.default.fileExists(atPath: marker), "the planted rustc-wrapper ran")
            #expect(!FileManager.default.fileExists(atPath: shared + "/roots"), "nothing is made on the host")
        }
        let inPlace = try CommandRunner.kindling(
            ["cargo", "build", "-q"], environment: environment.merging(["KINDLING_NO_NAMESPACES": "1"]) { $1 },
            directory: checkout)
        #expect(inPlace.status != 0, "\(inPlace)")
        #expect(inPlace.stderr.contains(config) && inPlace.stderr.contains("another user"), "\(inPlace)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the planted rustc-wrapper ran")
    }

    @Test("A path toolchain above the checkout never runs; one in the checkout is refused unless the user pins one")
    func pathToolchain() throws {
        let directory = TemporaryDirectory("toolchain")
        let real = try ProcessRunner.output("rustc", ["--print", "sysroot"], directory: "/")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let marker = directory.file("fake-toolchain-ran")
        let fake = directory.file("fake")
        try FileManager.default.createDirectory(atPath: fake + "/bin", withIntermediateDirectories: true)
        for tool in ["cargo", "rustc"] {
            try "#!/bin/sh\ntouch '\(marker)'\nexec '\(real)/bin/\(tool)' \"$@\"\n"
                .write(toFile: fake + "/bin/" + tool, atomically: true, encoding: .utf8)
            chmod(fake + "/bin/" + tool, 0o755)
        }
        let toolchainFile = "[toolchain]\npath = \"\(fake)\"\n"
        try FileManager.default.createDirectory(atPath: directory.file("work"), withIntermediateDirectories: true)
        try toolchainFile.write(toFile: directory.file("work/rust-toolchain.toml"), atomically: true, encoding: .utf8)
        try MiniRepository.create(at: directory.file("origin"))
        let checkout = directory.file("work/co")
        try MiniRepository.clone(directory.file("origin"), to: checkout)
        let environment = [
            "KINDLING_BUILD_ROOT": directory.file("roots"), "KINDLING_REPO": MiniRepository.name,
            "KINDLING_NO_RESTORE": "1", "KINDLING_HOME": directory.file("store"),
        ]

        let above = try CommandRunner.kindling(["cargo", "build", "-q"], environment: environment, directory: checkout)
        #expect(above.status == 0, "\(above)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the toolchain above the checkout ran")

        try toolchainFile.write(toFile: checkout + "/rust-toolchain.toml", atomically: true, encoding: .utf8)
        let inside = try CommandRunner.kindling(
            ["cargo", "build", "-q"], environment: environment, directory: checkout)
        #expect(inside.status != 0, "\(inside)")
        #expect(
            inside.stderr.contains("names a toolchain by path") && inside.stderr.contains("RUSTUP_TOOLCHAIN"),
            "\(inside)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the checkout's path toolchain ran")

        // The user's own choice wins over the file (and is the only way to run a toolchain named by path).
        let chosen = try CommandRunner.kindling(
            ["cargo", "build", "-q"], environment: environment.merging(["RUSTUP_TOOLCHAIN": "stable"]) { $1 },
            directory: checkout)
        #expect(chosen.status == 0, "\(chosen)")
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test("No variable that names a key reaches a build script")
    func keysScrubbed() throws {
        let directory = TemporaryDirectory("keys")
        try MiniRepository.create(at: directory.file("origin"))
        let checkout = directory.file("co")
        try MiniRepository.clone(directory.file("origin"), to: checkout)
        let keys = [
            "KINDLING_SECRET_KEY", "KINDLING_MESH_SECRET", "DEPLOY_SIGNING_KEY", "GPG_PRIVATE_KEY",
            "AWS_SECRET_ACCESS_KEY", "my_secret_key",
        ]
        var environment = [
            "KINDLING_BUILD_ROOT": directory.file("roots"), "KINDLING_REPO": MiniRepository.name,
            "KINDLING_NO_RESTORE": "1", "KINDLING_HOME": directory.file("store"), "HARMLESS_SETTING": "1",
        ]
        for key in keys { environment[key] = "/secrets/key" }
        for inPlace in Self.namespaces ? [false, true] : [true] {
            try? FileManager.default.removeItem(atPath: checkout + "/target")
            let env = inPlace ? environment.merging(["KINDLING_NO_NAMESPACES": "1"]) { $1 } : environment
            let built = try CommandRunner.kindling(["cargo", "build", "-q"], environment: env, directory: checkout)
            #expect(built.status == 0, "\(built)")
            let dump = MiniRepository.outFile("env.txt", target: checkout + "/target") ?? ""
            let names = Set(dump.split(separator: "\n").map(String.init))
            #expect(names.contains("HARMLESS_SETTING"), "the dump holds the environment: \(names.sorted())")
            #expect(names.isDisjoint(with: keys), "leaked: \(names.intersection(keys))")
        }
        #expect(BuildEnvironment.namesKey("KINDLING_SECRET_KEY") && !BuildEnvironment.namesKey("CARGO_HOME"))
        #expect(!BuildEnvironment.namesKey("RUSTUP_TOOLCHAIN") && !BuildEnvironment.namesKey("SSH_AUTH_SOCK"))
    }

    @Test(
        "Two users build the same repository at the same build root at once, neither seeing the other",
        .enabled(
            if: getuid() == 0 && CargoLauncher.namespacesAvailable, "needs root (to run as nobody) and namespaces"))
    func twoUsers() throws {
        let directory = TemporaryDirectory("two-users")
        chmod(directory.path, 0o755)
        let binary = directory.file("kindling")
        try FileManager.default.copyItem(atPath: CommandRunner.kindlingPath, toPath: binary)
        chmod(binary, 0o755)
        // nobody cannot enter /root: a hard-linked copy of the toolchain it can run (without rustup).
        let sysroot = try ProcessRunner.output("rustc", ["--print", "sysroot"], directory: "/")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let toolchain = directory.file("toolchain")
        let copy = try CommandRunner.run("/bin/cp", ["-al", sysroot, toolchain])
        try #require(copy.status == 0, "\(copy)")
        try MiniRepository.create(at: directory.file("origin"))
        for user in ["root", "nobody"] {
            try FileManager.default.createDirectory(atPath: directory.file(user), withIntermediateDirectories: true)
            try MiniRepository.clone(directory.file("origin"), to: directory.file(user + "/co"))
        }
        let chown = try CommandRunner.run("/bin/chown", ["-R", "65534:65534", directory.file("nobody")])
        try #require(chown.status == 0, "\(chown)")

        let roots = directory.file("roots")
        func script(_ who: String) -> String {
            let home = directory.file(who)
            return """
                export HOME='\(home)' CARGO_HOME='\(home)/cargo-home' KINDLING_HOME='\(home)/store' \
                KINDLING_BUILD_ROOT='\(roots)' KINDLING_REPO=test/two KINDLING_NO_RESTORE=1 MINI_WHO=\(who) \
                PATH='\(toolchain)/bin:/usr/bin:/bin'
                cd '\(home)/co' && exec '\(binary)' cargo build -q
                """
        }
        let results = Mutex<[String: CommandResult]>([:])
        let scripts = ["root": script("root"), "nobody": script("nobody")]
        DispatchQueue.concurrentPerform(iterations: 2) { index in
            let who = index == 0 ? "root" : "nobody"
            let command = scripts[who] ?? ""
            let result =
                who == "root"
                ? try? CommandRunner.run("/bin/sh", ["-c", command])
                : try? CommandRunner.run(
                    "/usr/bin/setpriv",
                    ["--reuid=65534", "--regid=65534", "--clear-groups", "--reset-env", "/bin/sh", "-c", command])
            if let result { results.withLock { $0[who] = result } }
        }
        let root = roots + "/test+two"
        for who in ["root", "nobody"] {
            let result = try #require(results.withLock { $0[who] })
            #expect(result.status == 0, "\(who): \(result)")
            let seen = MiniRepository.outFile("seen.txt", target: directory.file(who + "/co/target")) ?? ""
            let lines = seen.split(separator: "\n").map(String.init)
            #expect(lines.first == root + "/ws", "\(who) built at the canonical path: \(seen)")
            #expect(lines.last == "marker-\(who),test+two", "\(who) saw only its own files in the base: \(seen)")
        }
        #expect(!FileManager.default.fileExists(atPath: roots), "the build roots exist only inside the namespaces")
    }
}

/// A world with a bors checkout built at the build root, a developer checkout, a key and a trust file: the raw
/// material of hand-made (hostile) signed cargo snapshots.
final class HostileSnapshotWorld {
    let directory = TemporaryDirectory("hostile")
    var bors: String { directory.file("bors") }
    var dev: String { directory.file("dev") }
    var key: String { directory.file("bors.key") }
    var trust: String { directory.file("trust.json") }
    var roots: String { directory.file("roots") }
    func root() throws -> BuildRoot { BuildRoot.forRepository(try MiniRepository.repository(), base: roots) }
    var environment: [String: String] {
        ["KINDLING_BUILD_ROOT": roots, "KINDLING_REPO": MiniRepository.name, "KINDLING_TRUST": trust]
    }

    init() throws {
        try MiniRepository.create(at: directory.file("origin"))
        try MiniRepository.clone(directory.file("origin"), to: bors)
        try MiniRepository.clone(directory.file("origin"), to: dev)
        let keygen = try CommandRunner.kindling(["keygen", "--secret-key", key])
        let added = try CommandRunner.kindling(
            ["trust", "add", "--file", trust, "--name", "bors", "--public-key", keygen.lastLine, "--repos", "test/*"])
        try #require(added.status == 0, "\(added)")
        let built = try CommandRunner.kindling(
            ["cargo", "build", "-q"],
            environment: environment.merging(
                ["KINDLING_NO_RESTORE": "1", "KINDLING_HOME": directory.file("bors-store")]) { $1 },
            directory: bors)
        try #require(built.status == 0, "\(built)")
    }

    /// What `publish --cargo` would capture and sign, prepared before the caller tampers with the target.
    func prepare() throws -> (request: PublishRequest, capture: TreeCapture) {
        let workspace = try CargoWorkspace.locate(directory: bors, repository: try MiniRepository.repository())
        let prepared = try CargoPublishing(workspace: workspace, root: try root(), profile: "dev", targetTriple: nil)
            .prepare(allowDirty: false, pin: false)
        return (prepared.request, prepared.capture)
    }

    func kindling(
        _ arguments: [String], in directory: String, store: String, _ extra: [String: String] = [:]
    ) throws
        -> CommandResult
    {
        try CommandRunner.kindling(
            arguments, environment: environment.merging(["KINDLING_HOME": store]) { $1 }.merging(extra) { $1 },
            directory: directory)
    }
}

@Suite("Cargo: hostile snapshots (symlinks in cargo's bookkeeping, timestamps at the edges)")
struct CargoHostileSnapshotTests {
    @Test("A signed snapshot whose .fingerprint links outside the target is refused; nothing outside is removed")
    func fingerprintSymlink() throws {
        let world = try HostileSnapshotWorld()
        let prepared = try world.prepare()
        // The attack: the fingerprints folder is a link to a folder outside, where a unit's fingerprint folder
        // sits that a dep-info file naming a missing input makes the repair remove.
        let profile = world.bors + "/target/debug"
        let outside = world.directory.file("outside")
        #expect(rename(profile + "/.fingerprint", outside) == 0)
        try FileManager.default.createSymbolicLink(atPath: profile + "/.fingerprint", withDestinationPath: outside)
        let victim = outside + "/victim-0123456789abcdef"
        try FileManager.default.createDirectory(atPath: victim, withIntermediateDirectories: true)
        try "keep\n".write(toFile: victim + "/keep.txt", atomically: true, encoding: .utf8)
        try "victim: /nonexistent/kindling-missing-input.rs\n"
            .write(toFile: profile + "/deps/victim-0123456789abcdef.d", atomically: true, encoding: .utf8)

        // publish --cargo refuses it.
        let store = world.directory.file("hostile-store")
        let refused = try world.kindling(
            ["publish", "--cargo", "--secret-key", world.key], in: world.bors, store: store)
        #expect(refused.status != 0, "\(refused)")
        #expect(refused.stderr.contains("symlink") && refused.stderr.contains(".fingerprint"), "\(refused)")

        // A publisher that does not check (an older kindling, or a compromised one) signs it anyway.
        let key = try SecretKeyFile.load(path: world.key)
        let published = try Publisher(store: ChunkStore(root: store), key: key, capture: prepared.capture)
            .publish(prepared.request)
        #expect(published.manifest.body.entries.contains { $0.path == "debug/.fingerprint" && $0.kind == .symlink })

        let restore = try world.kindling(["restore", "--cargo"], in: world.dev, store: store)
        #expect(restore.status != 0, "\(restore)")
        #expect(restore.stderr.contains("symlink") && restore.stderr.contains("debug/.fingerprint"), "\(restore)")
        #expect(FileManager.default.fileExists(atPath: victim + "/keep.txt"), "the repair removed a folder outside")
        #expect(!FileManager.default.fileExists(atPath: world.dev + "/target/debug/.fingerprint"))

        // The automatic restore of a plain build refuses it too, and the build goes on from scratch.
        let build = try world.kindling(["cargo", "build", "-q"], in: world.dev, store: store)
        #expect(build.status == 0, "\(build)")
        #expect(build.stderr.contains("not restoring a snapshot"), "\(build)")
        #expect(FileManager.default.fileExists(atPath: victim + "/keep.txt"), "the repair removed a folder outside")
        var info = stat()
        #expect(lstat(world.dev + "/target/debug/.fingerprint", &info) == 0 && info.st_mode & S_IFMT == S_IFDIR)
    }

    @Test(
        "A snapshot dated at the format's limit (2262) is refused by restore, skipped by the automatic one, no crash"
    )
    func timestampEdges() throws {
        let world = try HostileSnapshotWorld()
        let prepared = try world.prepare()
        let key = try SecretKeyFile.load(path: world.key)
        let storePath = world.directory.file("edge-store")
        let store = try ChunkStore(root: storePath)
        let (manifest, _) = try Publisher(store: store, key: key, capture: prepared.capture).publish(prepared.request)
        var entries = manifest.body.entries
        let file = try #require(entries.firstIndex { $0.kind == .file })
        // 2^64-1 no longer signs (manifests stop at 2^63-1 ns, RestoreSafetyTests.timestampEdges); the latest time a
        // manifest can carry is still decades ahead of any clock.
        #expect(throws: FormatError.self) {
            var beyond = entries
            beyond[file].modificationTime = UInt64.max
            try ManifestBody(entries: beyond, extra: manifest.body.extra).validate()
        }
        entries[file].modificationTime = ManifestLimits.maxModificationTime
        let edge = try Manifest.sign(
            repository: manifest.header.repository, commit: manifest.header.commit,
            createdAt: manifest.header.createdAt + 1, cacheKey: manifest.header.cacheKey,
            body: ManifestBody(entries: entries, extra: manifest.body.extra), with: key)
        try store.saveManifest(TrustPolicy.trustingOwnKey(key).verify(edge))
        // Only the edge manifest stays: two bodies of one build by one key would be an equivocation, refused as such.
        try store.removeManifest(manifest.id)

        let restore = try world.kindling(["restore", "--cargo"], in: world.dev, store: storePath)
        #expect(restore.status == 1, "refused with an error, not a crash: \(restore)")
        #expect(restore.stderr.contains("more than a day ahead"), "\(restore)")
        let build = try world.kindling(["cargo", "build", "-q"], in: world.dev, store: storePath)
        #expect(build.status == 0, "\(build)")
        #expect(build.stderr.contains("not restoring a snapshot"), "\(build)")
    }

    @Test("Timestamps at the edges: waiting for the newest output and reading a file's time never overflow")
    func timestampArithmetic() throws {
        #expect(throws: CargoError.self) { try CargoRestoring.waitUntilPast(newestOutput: UInt64.max) }
        #expect(throws: CargoError.self) { try CargoRestoring.waitUntilPast(newestOutput: UInt64.max - 500_000_000) }
        let tenYears = CargoRestoring.now + 10 * 365 * 86_400 * 1_000_000_000
        let farFuture = #expect(throws: CargoError.self) { try CargoRestoring.waitUntilPast(newestOutput: tenYears) }
        #expect(farFuture?.description.contains("more than a day ahead") == true)
        #expect(saturatingNanoseconds(timespec(tv_sec: Int.max, tv_nsec: 999_999_999)) == UInt64.max)
        #expect(saturatingNanoseconds(timespec(tv_sec: -5, tv_nsec: 0)) == 0)
        #expect(saturatingNanoseconds(timespec(tv_sec: 2, tv_nsec: 5)) == 2_000_000_005)
    }

    @Test("Symlinks are refused wherever cargo writes (its bookkeeping above all), not in a build script's OUT_DIR")
    func bookkeepingRule() {
        let profiles = ["x86_64-unknown-linux-gnu/debug", "debug"]
        for path in [
            "debug", "x86_64-unknown-linux-gnu", "debug/.fingerprint", "debug/deps", "debug/deps/libx.rlib",
            "debug/build/x-1/output", "debug/build/x-1/out", "debug/incremental/x-1/s-1", "debug/.cargo-lock",
            "debug/\(FreshnessRepair.hiddenFingerprints)", "x86_64-unknown-linux-gnu/debug/.fingerprint/a-1",
            "debug/app", ".rustc_info.json", "CACHEDIR.TAG", "release/deps",
        ] {
            #expect(CargoBookkeeping.symlinkRefusal(path, profiles: profiles) != nil, "\(path)")
        }
        let allowed = [
            "debug/build/x-1/out/link", "debug/build/x-1/out/a/b", "x86_64-unknown-linux-gnu/debug/build/y-2/out/l",
        ]
        for path in allowed {
            #expect(CargoBookkeeping.symlinkRefusal(path, profiles: profiles) == nil, "\(path)")
        }
    }
}

@Suite("bors: building and signing as two users")
struct BorsSplitTests {
    static var script: String {
        URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("tools/bors/publish-after-merge.sh").path
    }

    @Test(
        "The build step runs as a user that cannot read the key and refuses to hold it; the signer publishes",
        .enabled(if: getuid() == 0 && CargoLauncher.namespacesAvailable, "needs root (to switch users) and namespaces"))
    func buildThenSign() throws {
        let directory = TemporaryDirectory("bors-split")
        chmod(directory.path, 0o755)
        let bin = directory.file("bin")
        try FileManager.default.createDirectory(atPath: bin, withIntermediateDirectories: true)
        try FileManager.default.copyItem(atPath: CommandRunner.kindlingPath, toPath: bin + "/kindling")
        let sysroot = try ProcessRunner.output("rustc", ["--print", "sysroot"], directory: "/")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let copy = try CommandRunner.run("/bin/cp", ["-al", sysroot, directory.file("toolchain")])
        try #require(copy.status == 0, "\(copy)")
        let script = directory.file("publish-after-merge.sh")
        try FileManager.default.copyItem(atPath: Self.script, toPath: script)
        chmod(script, 0o755)

        // The key: readable by the signer (daemon) alone.
        let keys = directory.file("keys")
        try FileManager.default.createDirectory(atPath: keys, withIntermediateDirectories: true)
        let key = keys + "/bors.key"
        try #require(CommandRunner.kindling(["keygen", "--secret-key", key]).status == 0)
        let origin = directory.file("origin")
        try MiniRepository.create(at: origin)
        try (key + "\n").write(toFile: origin + "/probe.txt", atomically: true, encoding: .utf8)
        try MiniRepository.git(["add", "-A"], in: origin)
        try MiniRepository.git(["commit", "-q", "-m", "probe"], in: origin)
        let commit = try MiniRepository.git(["rev-parse", "HEAD"], in: origin).stdout
            .trimmingCharacters(in: .whitespacesAndNewlines)
        for path in [keys, origin, directory.file("work"), directory.file("signer")] {
            try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
            try #require(CommandRunner.run("/bin/chown", ["-R", "1:1", path]).status == 0)
        }
        chmod(keys, 0o700)
        chmod(key, 0o400)
        try FileManager.default.createDirectory(atPath: directory.file("builder"), withIntermediateDirectories: true)
        try #require(CommandRunner.run("/bin/chown", ["-R", "65534:65534", directory.file("builder")]).status == 0)

        func step(_ uid: Int, _ name: String, _ environment: [String: String]) throws -> CommandResult {
            let common = [
                "PATH": "\(bin):\(directory.file("toolchain"))/bin:/usr/bin:/bin", "KINDLING": bin + "/kindling",
                "KINDLING_CI_WORK": directory.file("work"), "KINDLING_BUILD_ROOT": directory.file("roots"),
                "KINDLING_REPO": "test/bors",
            ]
            let assignments = common.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
            return try CommandRunner.run(
                "/usr/bin/setpriv",
                ["--reuid=\(uid)", "--regid=\(uid)", "--clear-groups", "--reset-env", "/usr/bin/env", "-i"]
                    + assignments + [script, name, origin, commit],
                directory: directory.path)
        }
        let signer = ["HOME": directory.file("signer"), "CARGO_HOME": directory.file("signer/cargo")]
        let checkout = try step(1, "checkout", signer)
        try #require(checkout.status == 0, "\(checkout)")
        let target = directory.file("work/origin/target")
        try FileManager.default.createDirectory(atPath: target, withIntermediateDirectories: true)
        try #require(CommandRunner.run("/bin/chown", ["65534:65534", target]).status == 0)

        let builder = ["HOME": directory.file("builder"), "CARGO_HOME": directory.file("builder/cargo")]
        let holding = try step(65534, "build", builder.merging(["KINDLING_SECRET_KEY": key]) { $1 })
        #expect(holding.status != 0 && holding.stderr.contains("must not hold the key"), "\(holding)")
        let build = try step(65534, "build", builder.merging(["MINI_WHO": "builder"]) { $1 })
        #expect(build.status == 0, "\(build)")
        let seen = MiniRepository.outFile("seen.txt", target: target) ?? ""
        #expect(seen.hasPrefix(directory.file("roots/test+bors/ws") + "\n"), "built at the build root: \(seen)")
        #expect(MiniRepository.outFile("probe.txt", target: target) == "denied", "the build could read the key")

        let signing = ["KINDLING_SECRET_KEY": key, "KINDLING_HOME": directory.file("signer/store")]
        let sign = try step(1, "sign", signer.merging(signing) { $1 })
        #expect(sign.status == 0, "\(sign)")
        #expect(sign.stdout.contains("repository test/bors commit \(commit)"), "\(sign)")
    }
}
