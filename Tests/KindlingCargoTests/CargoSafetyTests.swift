import Foundation
import KindlingCrypto
import KindlingTesting
import Testing

@testable import KindlingCargo

/// The cases where a restore could go wrong quietly: a crash halfway, inputs whose own mtime cannot speak for
/// them, no namespaces, a dirty publisher, clocks that disagree.
@Suite("Cargo: crashes, folders, links, fallbacks")
struct CargoSafetyTests {
    @Test("A restore killed before or after its swap never leaves a target that builds stale")
    func interruptedRestore() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.commit("one member") { try CargoEdits.changeCoreConstant(in: $0, to: 5) }
        try world.devCheckout()

        // Killed before the swap: no target at all, the checkout untouched, the staging folder left to clean up.
        let clone = try world.git(["ls-files", "-s"], in: world.dev).stdout
        let before = try world.devRestore(environment: ["KINDLING_FAILPOINT": "before-swap"])
        #expect(before.status == 70, "\(before)")
        #expect(!FileManager.default.fileExists(atPath: world.dev + "/target"))
        #expect(try world.git(["ls-files", "-s"], in: world.dev).stdout == clone)

        // Killed after the swap, before the checkout was stamped: the fingerprints are hidden, so cargo can only
        // rebuild, and a plain build (no restore, no repair) equals a clean build.
        let after = try world.devRestore(environment: ["KINDLING_FAILPOINT": "after-swap"])
        #expect(after.status == 70, "\(after)")
        #expect(!FileManager.default.fileExists(atPath: world.dev + "/target/debug/.fingerprint"))
        #expect(
            FileManager.default.fileExists(atPath: world.dev + "/target/debug/" + FreshnessRepair.hiddenFingerprints))
        #expect(
            RestoreMarker.state(of: world.dev + "/target").isReplaceable, "an interrupted restore holds no local work")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: world.dev).filter {
            $0.contains("kindling-staging")
        }
        #expect(leftovers.isEmpty, "the next restore removed the abandoned staging folder: \(leftovers)")

        // Restoring again needs no --replace, and then the edit alone compiles; a second build is a no-op.
        let again = try world.devRestore()
        #expect(again.status == 0, "\(again)")
        let build = try world.devBuild()
        #expect(Set(build.compiled) == ["core_lib", "app"], "\(build)")
        #expect(try world.devBuild().compiled.isEmpty, "a second build compiles nothing")
        #expect(try world.app(in: world.dev) == (try world.cleanBuild()).app)
    }

    @Test("A file deleted from a watched folder and a retargeted symlink rebuild, in a checkout older than the build")
    func foldersAndLinks() throws {
        let world = try CargoWorld()
        try world.commit("gen watches a folder; envy reads its banner through a symlink") { origin in
            let extra = origin + "/crates/gen/data/extra"
            try FileManager.default.createDirectory(atPath: extra, withIntermediateDirectories: true)
            try "1\n".write(toFile: extra + "/one.txt", atomically: true, encoding: .utf8)
            try "2\n".write(toFile: extra + "/two.txt", atomically: true, encoding: .utf8)
            let buildScript = origin + "/crates/gen/build.rs"
            try String(contentsOfFile: buildScript, encoding: .utf8).replacingOccurrences(
                of: "let flavor = env::var(\"GEN_FLAVOR\").unwrap_or_else(|_| \"plain\".into());",
                with: """
                    println!("cargo:rerun-if-changed=data/extra");
                        let flavor = format!("{}-extra{}", env::var("GEN_FLAVOR").unwrap_or_else(|_| "plain".into()), \
                    fs::read_dir("data/extra").map(|d| d.count()).unwrap_or(0));
                    """
            ).write(toFile: buildScript, atomically: true, encoding: .utf8)
            try "banner-other\n".write(toFile: origin + "/shared/other.txt", atomically: true, encoding: .utf8)
            try FileManager.default.createSymbolicLink(
                atPath: origin + "/crates/envy/src/banner-link.txt", withDestinationPath: "../../../shared/banner.txt")
            let lib = origin + "/crates/envy/src/lib.rs"
            try String(contentsOfFile: lib, encoding: .utf8)
                .replacingOccurrences(
                    of: "include_str!(\"../../../shared/banner.txt\")", with: "include_str!(\"banner-link.txt\")"
                )
                .write(toFile: lib, atomically: true, encoding: .utf8)
        }
        try world.borsPublish()
        #expect(try world.app(in: world.bors).contains("flavor=plain-extra2"))

        // Neither change touches a file's content: one only removes a name, the other only points elsewhere.
        try world.commit("one file less; the link points elsewhere") { origin in
            try FileManager.default.removeItem(atPath: origin + "/crates/gen/data/extra/two.txt")
            let link = origin + "/crates/envy/src/banner-link.txt"
            try FileManager.default.removeItem(atPath: link)
            try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "../../../shared/other.txt")
        }
        try world.devCheckout()
        // A checkout older than the CI build: every mtime, folders and links included, before it.
        try world.run(
            "/usr/bin/find",
            [
                world.dev, "-path", world.dev + "/.git", "-prune", "-o", "-exec", "touch", "-h", "-d", "2001-01-01",
                "{}", "+",
            ])
        let restore = try world.devRestore()
        #expect(restore.status == 0, "\(restore)")
        let build = try world.devBuild()
        #expect(build.compiled.contains("gen") && build.compiled.contains("envy"), "\(build)")
        #expect(Set(build.compiled).isSubset(of: ["gen", "envy", "app"]), "\(build)")
        let app = try world.app(in: world.dev)
        #expect(app.contains("flavor=plain-extra1") && app.contains("banner=banner-other"), "stale: \(app)")
        #expect(app == (try world.cleanBuild()).app)
        #expect(try world.devBuild().compiled.isEmpty, "a second build compiles nothing")
    }

    @Test("Without namespaces cargo builds in place: compiled units are reused, those naming the build root rebuild")
    func withoutNamespaces() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.devCheckout()
        let inPlace = ["KINDLING_NO_NAMESPACES": "1"]
        let restore = try world.devRestore(environment: inPlace)
        #expect(restore.status == 0, "\(restore)")
        #expect(restore.stdout.contains("incremental state will not be reused"), "\(restore)")
        let build = try world.devBuild(environment: inPlace)
        #expect(build.text.contains("user namespaces are unavailable"), "the build says what is lost")
        // Cargo names members' files relative to the workspace (facts §1): they stay fresh. envy names a file
        // outside its package by an absolute build-root path, so it rebuilds, with what depends on it.
        #expect(Set(build.compiled) == ["envy", "app"], "\(build)")
        #expect(try world.app(in: world.dev) == (try world.cleanBuild()).app)
    }

    @Test("publish --cargo refuses a dirty checkout unless --allow-dirty")
    func dirtyPublisher() throws {
        let world = try CargoWorld(nodes: false)
        try "changed\n".write(toFile: world.bors + "/shared/banner.txt", atomically: true, encoding: .utf8)
        let env = world.environment.merging(["KINDLING_HOME": world.borsStore]) { $1 }
        let refused = try world.kindling(
            ["publish", "--cargo", "--secret-key", world.key], in: world.bors, environment: env)
        #expect(refused.status != 0)
        #expect(
            refused.stderr.contains("uncommitted changes") && refused.stderr.contains("--allow-dirty"), "\(refused)")
        // With --allow-dirty it gets past the check, to the next one: nothing is built yet.
        let allowed = try world.kindling(
            ["publish", "--cargo", "--allow-dirty", "--secret-key", world.key], in: world.bors, environment: env)
        #expect(allowed.status != 0)
        #expect(allowed.stderr.contains("build first"), "\(allowed)")
    }

    @Test("A clock behind the builder's is waited out when it is a second or two, refused when it is more")
    func clockSkew() throws {
        let now = CargoRestoring.now
        let started = Date()
        try CargoRestoring.waitUntilPast(newestOutput: now - 500_000_000)
        #expect(Date().timeIntervalSince(started) >= 0.4, "less than a second after the newest output: waits")
        #expect(CargoRestoring.now >= now + 500_000_000)
        let refused = #expect(throws: CargoError.self) {
            try CargoRestoring.waitUntilPast(newestOutput: CargoRestoring.now + 60_000_000_000)
        }
        #expect(refused?.description.contains("clock is 6") == true, "\(String(describing: refused))")
    }

    @Test("Cargo records round-trip; version-1 records (no folders) still decode")
    func recordVersions() throws {
        let digest = Blake2b.hash(Array("x".utf8))
        let record = CargoRecord(
            root: "/r", workspaceDirectory: "", profileDirectories: ["debug"],
            sources: [.init(path: "a/b.rs", size: 1, digest: digest, modificationTime: 7)],
            directories: [.init(path: "a", names: CargoRecord.namesDigest(["b.rs"]), modificationTime: 8)],
            externalInputs: [.init(path: "/etc/x", digest: nil)])
        #expect(try CargoRecord(decoding: record.encoded()) == record)
        var version1 = record
        version1.directories = nil
        var bytes = version1.encoded()
        bytes[0] = 1
        bytes.removeLast()  // version 1 ends before the directory count
        #expect(try CargoRecord(decoding: bytes) == version1)
        #expect(throws: CargoError.self) { try CargoRecord(decoding: [3]) }
        #expect(CargoRecord.namesDigest(["b", "a"]) == CargoRecord.namesDigest(["a", "b"]))
        #expect(CargoRecord.namesDigest(["a", "b"]) != CargoRecord.namesDigest(["a"]))
    }
}

@Suite("Cargo: cache key")
struct CargoCacheKeyTests {
    @Test("Cargo config outside the checkout counts in the key when it can change the build, not otherwise")
    func configOutsideTheCheckout() throws {
        let directory = TemporaryDirectory("cargo-config")
        let home = directory.file("cargo-home")
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
        let root = BuildRoot(path: directory.file("roots/owner--repo"))
        let files = CargoCacheKey.configFiles(cargoHome: home, root: root)
        #expect(files.contains(home + "/config.toml"))
        #expect(files.contains(directory.file("roots/.cargo/config.toml")))
        #expect(files.contains("/.cargo/config.toml"))

        #expect(CargoCacheKey.configDigest(files: files).isEmpty, "no config: nothing in the key")
        try "[net]\ngit-fetch-with-cli = true\n[build]\njobs = 2\n".write(
            toFile: home + "/config.toml", atomically: true, encoding: .utf8)
        #expect(CargoCacheKey.configDigest(files: files).isEmpty, "network settings and job counts change no output")
        try "[build]\njobs = 2\nrustflags = [\"-C\", \"target-cpu=native\"]\n".write(
            toFile: home + "/config.toml", atomically: true, encoding: .utf8)
        let flags = CargoCacheKey.configDigest(files: files)
        #expect(!flags.isEmpty)
        try "profile.dev.opt-level = 1\n".write(toFile: home + "/config.toml", atomically: true, encoding: .utf8)
        let profile = CargoCacheKey.configDigest(files: files)
        #expect(!profile.isEmpty && profile != flags)
    }
}
