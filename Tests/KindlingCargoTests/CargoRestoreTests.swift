import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSnapshot
import KindlingStore
import KindlingTesting
import Testing

/// The cargo integration, with real cargo builds: bors builds at its build root and publishes; the developer, in
/// another checkout with another CARGO_HOME, restores through its node and builds with `kindling cargo build`.
@Suite("Cargo: restore and build")
struct CargoRestoreTests {
    @Test(
        "(a) no change: nothing compiles; (b) one member changed: only it and its dependents, reusing incremental state"
    )
    func unchangedAndOneMember() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.devCheckout()
        let restore = try world.devRestore()
        #expect(restore.stdout.contains("0 commits behind HEAD"), "\(restore)")
        #expect(restore.stdout.contains("fetched ("), "the restore went through the node: \(restore)")

        let unchanged = try world.devBuild()
        #expect(unchanged.compiled.isEmpty, "\(unchanged)")
        #expect(unchanged.fresh.count >= 15)
        // Inside the checkout, status lists this repository's snapshots.
        let status = try world.kindling(["status"], in: world.dev, environment: world.devEnvironment)
        let published = try world.git(["rev-parse", "HEAD"], in: world.bors).stdout.prefix(12)
        #expect(status.stdout.contains("snapshots  1 of ") && status.stdout.contains("@" + published), "\(status)")

        // One line of one module of the big member.
        try CargoEdits.changeCoreConstant(in: world.dev, to: 7)
        let started = Date()
        Thread.sleep(forTimeInterval: 0.05)
        let oneMember = try world.devBuild()
        #expect(Set(oneMember.compiled) == ["core_lib", "app"], "\(oneMember)")
        // Incremental reuse: in core_lib's new session, most object files are hard links to the restored session's
        // (old mtimes); only the changed codegen units are written now. Without reuse, all of them would be new.
        let reuse = try incrementalReuse(target: world.dev + "/target", crate: "core_lib", since: started)
        #expect(reuse.total >= 8)
        #expect(reuse.recompiled * 4 <= reuse.total, "\(reuse.recompiled) of \(reuse.total) codegen units recompiled")
        #expect(try world.app(in: world.dev).contains("core=core-v1"))
    }

    @Test(
        "(c) Cargo.lock, build-script input, env var, outside-package edits rebuild what they affect, as a clean build",
        arguments: CargoEdits.Kind.allCases)
    func changesRebuildWhatTheyAffect(change: CargoEdits.Kind) throws {
        let world = try CargoWorld()
        try world.borsPublish()
        var environment: [String: String] = [:]
        if change == .environment {
            environment["ENVY_MSG"] = "hello-from-the-developer"
        } else {
            try world.commit(change.rawValue) { try CargoEdits.apply(change, to: $0) }
        }
        try world.devCheckout()
        let restore = try world.devRestore()
        #expect(restore.status == 0, "\(restore)")
        let build = try world.devBuild(environment: environment)
        #expect(!build.compiled.isEmpty, "the change must rebuild something: \(build)")
        #expect(Set(build.compiled).isSubset(of: change.affected), "\(change): \(build)")
        #expect(build.compiled.contains("app"))
        let clean = try world.cleanBuild(environment: environment)
        #expect(try world.app(in: world.dev) == clean.app)
        #expect(try world.devTests(environment: environment) == clean.tests)
        #expect(clean.app.contains(change.evidence), "\(clean.app)")
    }

    @Test("(d) a snapshot with another toolchain or another profile is never used, and the message says why")
    func otherKeysNeverUsed() throws {
        let world = try CargoWorld(nodes: false)
        // A release build, and a dev snapshot whose key claims another rustc.
        try world.borsPublish(profile: "release")
        let realID = try world.borsPublish()
        let store = try ChunkStore(root: world.borsStore)
        let realDigest = try #require(Digest(hex: realID))
        let real = try #require(try store.manifest(realDigest))
        var key = real.header.cacheKey
        key["rustc"] = "rustc 1.80.0 (051478957 2024-07-21)\nbinary: rustc\nhost: x86_64-unknown-linux-gnu"
        let signer = try SecretKeyFile.load(path: world.key)
        _ = try Publisher(store: store, key: signer).publish(
            PublishRequest(
                repository: real.header.repository, commit: real.header.commit, directory: world.bors + "/target",
                cacheKey: key, extra: real.body.extra))
        try store.unpin(real.id)
        try store.removeManifest(real.id)

        try world.devCheckout()
        let restore = try world.kindling(
            ["restore", "--cargo", "--store", world.borsStore], in: world.dev, environment: world.devEnvironment)
        #expect(restore.status != 0)
        #expect(restore.stderr.contains("no snapshot with a matching cache key"), "\(restore)")
        #expect(restore.stderr.contains("profile: release (wanted debug)"), "\(restore)")
        #expect(restore.stderr.contains("rustc: rustc 1.80.0"), "\(restore)")
        #expect(!FileManager.default.fileExists(atPath: world.dev + "/target"))
    }

    @Test("(e) a target directory with local work is refused without --replace, and replaced with it")
    func localWork() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.devCheckout()
        #expect(try world.devRestore().status == 0)
        // Restoring over a pristine restore is fine.
        #expect(try world.devRestore().status == 0)
        try CargoEdits.changeCoreConstant(in: world.dev, to: 9)
        _ = try world.devBuild()
        let refused = try world.devRestore()
        #expect(refused.status != 0)
        #expect(refused.stderr.contains("local work"), "\(refused)")
        #expect(refused.stderr.hasPrefix("kindling: error: "))
        let replaced = try world.devRestore(["--replace"])
        #expect(replaced.status == 0, "\(replaced)")
        // The replaced target plus the freshness repair still builds the developer's edit.
        let build = try world.devBuild()
        #expect(Set(build.compiled) == ["core_lib", "app"], "\(build)")
    }

    @Test("(f) a snapshot several commits behind HEAD is found, used, and only what changed since recompiles")
    func severalCommitsBehind() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.commit("banner") { try CargoEdits.apply(.outOfPackageFile, to: $0) }
        try world.commit("table") { try CargoEdits.apply(.buildScriptInput, to: $0) }
        try world.commit("readme") { try "notes\n".write(toFile: $0 + "/NOTES.md", atomically: true, encoding: .utf8) }
        try world.devCheckout()
        let restore = try world.devRestore()
        #expect(restore.stdout.contains("3 commits behind HEAD"), "\(restore)")
        let build = try world.devBuild()
        #expect(Set(build.compiled) == ["envy", "gen", "app"], "\(build)")
        #expect(try world.app(in: world.dev) == (try world.cleanBuild()).app)
        // The walk is bounded: two commits back is not far enough.
        let bounded = try world.devRestore(["--replace", "--max-distance", "2"])
        #expect(bounded.status != 0 && bounded.stderr.contains("last 3 commits"), "\(bounded)")

        // Far behind: 51 commits later bors has published again. A target with local builds is never replaced on
        // the user's behalf (a note says what would help); a pristine restore is.
        for index in 0..<51 { try world.commit("later \(index)") { _ in } }
        try world.borsPublish()
        try world.devCheckout()
        let kept = try world.kindling(["cargo", "build", "-v"], in: world.dev, environment: world.devEnvironment)
        #expect(kept.status == 0, "\(kept)")
        #expect(kept.stderr.contains("commits behind HEAD, and has local builds since"), "\(kept)")
        #expect(!kept.stderr.contains("kindling: restored"), "\(kept)")
        try world.devCheckout("HEAD~51")
        #expect(try world.devRestore(["--replace"]).status == 0)
        try world.devCheckout()
        let replaced = try world.kindling(["cargo", "build", "-v"], in: world.dev, environment: world.devEnvironment)
        #expect(replaced.status == 0, "\(replaced)")
        #expect(
            replaced.stderr.contains("kindling: restored") && replaced.stderr.contains("(0 commits behind HEAD)"),
            "\(replaced)")
        #expect(BuildLog(replaced.stderr).compiled.isEmpty, "\(BuildLog(replaced.stderr))")
    }

    @Test("kindling cargo restores on its own into an empty target")
    func kindlingCargoRestoresByItself() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        try world.devCheckout()
        let build = try world.kindling(["cargo", "build", "-v"], in: world.dev, environment: world.devEnvironment)
        #expect(build.status == 0, "\(build)")
        #expect(build.stderr.contains("restored "), "\(build)")
        #expect(BuildLog(build.stderr).compiled.isEmpty, "\(BuildLog(build.stderr))")
    }
}

@Suite("Cargo: repository names")
struct RepositoryNameTests {
    @Test("A fork's checkout finds bors's snapshots through its upstream remote, or a name given once with --repo")
    func forks() throws {
        let world = try CargoWorld()
        try world.borsPublish()
        let listed = try world.kindling(
            ["list", "--store", world.borsStore, "--json"], in: world.bors, environment: world.environment)
        let rows = try #require(try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])
        let name = try #require(rows.first?["repository"] as? String)
        try world.devCheckout()
        try world.git(["remote", "set-url", "origin", "https://example.invalid/someone/fork.git"], in: world.dev)
        let unknown = try world.devRestore()
        #expect(unknown.status != 0 && unknown.stderr.contains("no snapshot"), "\(unknown)")

        try world.git(["remote", "add", "upstream", world.origin], in: world.dev)
        #expect(try world.devRestore().status == 0, "the upstream remote names the repository")
        try world.git(["remote", "remove", "upstream"], in: world.dev)

        let named = try world.devRestore(["--repo", name, "--replace"])
        #expect(named.status == 0, "\(named)")
        #expect(named.stderr.contains("this checkout is now known as \(name)"), "\(named)")
        // kindling cargo now builds at the same build root: nothing compiles.
        let build = try world.devBuild()
        #expect(build.compiled.isEmpty, "\(build)")
    }
}

/// The kinds of change the issue names, how to make them, and which units each may rebuild.
enum CargoEdits {
    enum Kind: String, CaseIterable, CustomTestStringConvertible {
        case cargoLock = "Cargo.lock: relocmark 0.1.1 -> 0.1.0"
        case buildScriptInput = "build-script input: gen/data/table.txt"
        case environment = "environment variable read by option_env!"
        case outOfPackageFile = "out-of-package file: shared/banner.txt"

        var testDescription: String { rawValue }

        /// Units allowed to compile after this change (the change's package, its dependents, and for Cargo.lock
        /// the changed crate).
        var affected: Set<String> {
            switch self {
            case .cargoLock: return ["relocmark", "envy", "app"]
            case .buildScriptInput: return ["gen", "app"]
            case .environment: return ["envy", "app"]
            case .outOfPackageFile: return ["envy", "app"]
            }
        }

        /// What the program prints once the change is built.
        var evidence: String {
            switch self {
            case .cargoLock: return "relocmark=0.1.0"
            case .buildScriptInput: return "sum=106"
            case .environment: return "msg=hello-from-the-developer"
            case .outOfPackageFile: return "banner=banner-v2"
            }
        }
    }

    static func apply(_ kind: Kind, to checkout: String) throws {
        switch kind {
        case .cargoLock:
            var lock = try String(contentsOfFile: checkout + "/Cargo.lock", encoding: .utf8)
            lock = lock.replacingOccurrences(
                of: "name = \"relocmark\"\nversion = \"0.1.1\"", with: "name = \"relocmark\"\nversion = \"0.1.0\"")
            lock = lock.replacingOccurrences(of: checksum("relocmark-0.1.1"), with: checksum("relocmark-0.1.0"))
            try lock.write(toFile: checkout + "/Cargo.lock", atomically: true, encoding: .utf8)
        case .buildScriptInput:
            try "1\n2\n3\n100\n".write(
                toFile: checkout + "/crates/gen/data/table.txt", atomically: true, encoding: .utf8)
        case .environment:
            break
        case .outOfPackageFile:
            try "banner-v2\n".write(toFile: checkout + "/shared/banner.txt", atomically: true, encoding: .utf8)
        }
    }

    /// Changes the first constant of core's module m0 (a one-line change in the big member).
    static func changeCoreConstant(in checkout: String, to value: Int) throws {
        let path = checkout + "/crates/core/src/m0.rs"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        guard let range = text.range(of: #"let mut total: u64 = \d+;"#, options: .regularExpression) else { return }
        try text.replacingCharacters(in: range, with: "let mut total: u64 = \(value);").write(
            toFile: path, atomically: false, encoding: .utf8)
    }

    /// The package checksum the generator gives a relocmark version (SHA-256 of "relocmark-<version>").
    static func checksum(_ name: String) -> String {
        let result = try? CommandRunner.run(
            "/usr/bin/env",
            ["python3", "-c", "import hashlib,sys;print(hashlib.sha256(sys.argv[1].encode()).hexdigest())", name])
        return result?.stdout.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
    }
}

@Suite("Cargo: inputs outside git")
struct ExternalInputTests {
    @Test("A system file a build script watches, changed on the developer's machine with an old mtime, still rebuilds")
    func changedSystemFileWithOldMtime() throws {
        let world = try CargoWorld()
        // A "system" file outside the checkout, at the same absolute path for bors and the developer.
        let system = world.directory.file("system/flavor.conf")
        try FileManager.default.createDirectory(
            atPath: world.directory.file("system"), withIntermediateDirectories: true)
        try "system-v1\n".write(toFile: system, atomically: true, encoding: .utf8)
        try world.commit("gen reads a system file") { origin in
            let buildScript = origin + "/crates/gen/build.rs"
            var text = try String(contentsOfFile: buildScript, encoding: .utf8)
            text = text.replacingOccurrences(
                of: "let flavor = env::var(\"GEN_FLAVOR\").unwrap_or_else(|_| \"plain\".into());",
                with: """
                    println!("cargo:rerun-if-changed=\(system)");
                        let flavor = fs::read_to_string("\(system)").unwrap().trim().to_string();
                    """)
            try text.write(toFile: buildScript, atomically: true, encoding: .utf8)
        }
        try world.borsPublish()
        // The developer's machine has another version of the file, with a timestamp older than any build output:
        // cargo's own mtime check would call it unchanged.
        try "system-v2\n".write(toFile: system, atomically: true, encoding: .utf8)
        var old = [timespec(tv_sec: 978_307_200, tv_nsec: 0), timespec(tv_sec: 978_307_200, tv_nsec: 0)]
        #expect(utimensat(AT_FDCWD, system, &old, 0) == 0)
        try world.devCheckout()
        let restore = try world.devRestore()
        #expect(restore.stdout.contains("units invalidated"), "\(restore)")
        let build = try world.devBuild()
        #expect(build.compiled.contains("gen"), "\(build)")
        #expect(try world.app(in: world.dev).contains("flavor=system-v2"))
    }
}
