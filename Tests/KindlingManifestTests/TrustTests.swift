import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@Suite("Trust")
struct TrustTests {
    let bors = Fixtures.key(1)
    let stranger = Fixtures.key(2)

    func policy(_ keys: [TrustedKey]) -> TrustPolicy { TrustPolicy(trust: TrustFile(keys: keys)) }

    func signed(
        by key: SigningKey, repository: String = "rust-lang/rust", createdAt: Date = Date()
    ) throws -> SignedHeader {
        try Manifest.sign(
            repository: repository, commit: "c1", createdAt: createdAt.nanosecondsSinceEpoch, cacheKey: [:],
            body: ManifestBody(entries: []), with: key
        ).signed
    }

    @Test("A trusted key covering the repository is accepted")
    func accepted() throws {
        let trust = policy([
            TrustedKey(name: "bors", publicKey: bors.publicKey, repositories: [RepositoryGlob("rust-lang/*")])
        ])
        #expect(try trust.evaluate(try signed(by: bors)).name == "bors")
    }

    @Test("An unknown key is rejected")
    func unknownKey() throws {
        let trust = policy([TrustedKey(name: "bors", publicKey: bors.publicKey)])
        #expect(throws: TrustError.unknownKey(stranger.publicKey)) { try trust.evaluate(try signed(by: stranger)) }
    }

    @Test("A header whose bytes were changed after signing is rejected")
    func tampered() throws {
        let trust = policy([TrustedKey(name: "bors", publicKey: bors.publicKey)])
        let original = try signed(by: bors)
        var header = original.header
        header.commit = "evil"
        let forged = try SignedHeader(headerBytes: header.encoded(), signature: original.signature)
        #expect(throws: TrustError.badSignature(manifest: forged.id)) { try trust.evaluate(forged) }
    }

    @Test("A key may only sign for its repositories")
    func repositoryScope() throws {
        let trust = policy([
            TrustedKey(name: "bors", publicKey: bors.publicKey, repositories: [RepositoryGlob("rust-lang/*")])
        ])
        #expect(throws: TrustError.self) { try trust.evaluate(try signed(by: bors, repository: "evil/rust")) }
        #expect(throws: TrustError.self) { try trust.evaluate(try signed(by: bors, repository: "rust-lang/a/b")) }
    }

    @Test("Validity windows, revocation and future creation times")
    func validity() throws {
        let now = Date()
        let retired = policy([
            TrustedKey(name: "old", publicKey: bors.publicKey, validUntil: now.addingTimeInterval(-3600))
        ])
        #expect(throws: TrustError.self) { try retired.evaluate(try signed(by: bors, createdAt: now)) }
        #expect(try retired.evaluate(try signed(by: bors, createdAt: now.addingTimeInterval(-7200))).name == "old")

        let notYet = policy([
            TrustedKey(name: "new", publicKey: bors.publicKey, validFrom: now.addingTimeInterval(3600))
        ])
        #expect(throws: TrustError.self) { try notYet.evaluate(try signed(by: bors, createdAt: now)) }

        let revoked = policy([TrustedKey(name: "leaked", publicKey: bors.publicKey, revoked: true)])
        #expect(throws: TrustError.revokedKey(name: "leaked")) {
            try revoked.evaluate(try signed(by: bors, createdAt: now.addingTimeInterval(-86400 * 365)))
        }

        let open = policy([TrustedKey(name: "bors", publicKey: bors.publicKey)])
        #expect(throws: TrustError.self) {
            try open.evaluate(try signed(by: bors, createdAt: now.addingTimeInterval(3600)))
        }
        #expect(try open.evaluate(try signed(by: bors, createdAt: now.addingTimeInterval(60))).name == "bors")
    }

    @Test(
        "Repository globs",
        arguments: [
            ("rust-lang/*", "rust-lang/rust", true), ("rust-lang/*", "rust-lang/a/b", false),
            ("rust-lang/**", "rust-lang/a/b", true), ("**", "anything/at/all", true), ("r?st", "rust", true),
            ("r?st", "r/st", false), ("exact", "exact", true), ("exact", "exactly", false),
            ("*-mirror", "x-mirror", true),
        ])
    func globs(pattern: String, repository: String, matches: Bool) {
        #expect(RepositoryGlob(pattern).matches(repository) == matches)
    }

    @Test("A trust file round-trips through JSON and rejects malformed documents")
    func trustFileFormat() throws {
        let directory = TemporaryDirectory("trust")
        let file = TrustFile(keys: [
            TrustedKey(
                name: "bors", publicKey: bors.publicKey, repositories: [RepositoryGlob("rust-lang/*")],
                validFrom: Date(timeIntervalSince1970: 1_767_225_600), validUntil: nil, revoked: false),
            TrustedKey(name: "old", publicKey: stranger.publicKey, revoked: true),
        ])
        try file.save(path: directory.file("trust.json"))
        #expect(try TrustFile.load(path: directory.file("trust.json")) == file)

        let key = bors.publicKey.text
        let malformed = [
            "", "{", "[]", #"{"kindling-trust": 2, "keys": []}"#,
            #"{"kindling-trust": 1, "keys": [{"name": "x", "publicKey": "ed25519:00", "repositories": ["*"]}]}"#,
            #"{"kindling-trust": 1, "keys": [{"name": "x", "publicKey": "\#(key)", "repositories": []}]}"#,
            #"{"kindling-trust": 1, "keys": [{"name": "x", "publicKey": "\#(key)", "#
                + #""repositories": ["*"], "validFrom": "yesterday"}]}"#,
        ]
        for text in malformed {
            #expect(throws: TrustError.self, "\(text)") { try TrustFile.parse(Data(text.utf8), path: "t") }
        }
        #expect(throws: TrustError.self) { try TrustFile.load(path: directory.file("missing.json")) }
    }

    @Test("Secret key files are created 0600, never overwritten, and refused when others can read them")
    func secretKeyFile() throws {
        let directory = TemporaryDirectory("keys")
        let path = directory.file("bors.key")
        try SecretKeyFile.create(path: path, key: bors)
        #expect(Fixtures.status(path)?.mode == 0o600)
        #expect(try SecretKeyFile.load(path: path).publicKey == bors.publicKey)
        #expect(throws: KeyFileError.alreadyExists(path: path)) { try SecretKeyFile.create(path: path, key: stranger) }
        chmod(path, 0o644)
        #expect(throws: KeyFileError.tooOpen(path: path, mode: 0o644)) { try SecretKeyFile.load(path: path) }
        #expect(throws: KeyFileError.missing(path: directory.file("nope"))) {
            try SecretKeyFile.load(path: directory.file("nope"))
        }
        try Fixtures.write("garbage\n", to: directory.file("bad.key"), mode: 0o600)
        #expect(throws: KeyFileError.malformed(path: directory.file("bad.key"))) {
            try SecretKeyFile.load(path: directory.file("bad.key"))
        }
    }
}
