import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

/// The trust document's format and TrustUpdate's rules (Specs/trust.md, "Trust documents"): one test per rule.
@Suite("Trust documents")
struct TrustDocumentTests {
    let rootA = Fixtures.key(11)
    let rootB = Fixtures.key(12)
    let rootC = Fixtures.key(13)
    let newX = Fixtures.key(21)
    let newY = Fixtures.key(22)
    let bors = Fixtures.key(1)
    let now = Date(timeIntervalSince1970: 1_780_000_000)

    var roots: TrustRoots { get throws { try TrustRoots(keys: [rootA, rootB, rootC].map(\.publicKey), threshold: 2) } }
    var newRoots: TrustRoots { get throws { try TrustRoots(keys: [newX, newY].map(\.publicKey), threshold: 2) } }

    func document(
        version: UInt64, roots: TrustRoots? = nil, expiresIn: TimeInterval = 86400, withdrawn: Set<Digest> = []
    ) throws -> SignedTrustDocument {
        SignedTrustDocument(
            document: TrustDocument(
                version: version, expires: now.addingTimeInterval(expiresIn), roots: try roots ?? self.roots,
                keys: [TrustedKey(name: "bors", publicKey: bors.publicKey, repositories: [RepositoryGlob("r/*")])],
                withdrawn: withdrawn))
    }

    func evaluate(_ candidate: SignedTrustDocument, current: SignedTrustDocument?) throws -> TrustUpdate.Outcome {
        try TrustUpdate.evaluate(candidate: candidate, current: current, configuredRoots: try roots, now: now)
    }

    /// The refusal for `signed`: `valid` of `roots`' threshold, missing the roots that did not sign.
    func below(
        _ version: UInt64, _ role: TrustDocumentError.Roots, _ roots: TrustRoots, signedBy: [SigningKey]
    ) -> TrustDocumentError {
        let signers = Set(signedBy.map(\.publicKey))
        return .belowThreshold(
            version: version, roots: role, valid: signers.count, threshold: roots.threshold,
            missing: roots.keys.filter { !signers.contains($0) })
    }

    // MARK: roots

    @Test("A threshold below 1 is refused, at TrustRoots and in a decoded file")
    func thresholdBelowOne() throws {
        #expect(throws: TrustDocumentError.self) { try TrustRoots(keys: [rootA.publicKey], threshold: 0) }
        #expect(throws: TrustDocumentError.self) { try TrustRoots(keys: [rootA.publicKey], threshold: -1) }
        #expect(throws: TrustDocumentError.self) { try TrustRoots(keys: [rootA.publicKey], threshold: 2) }
        #expect(throws: TrustDocumentError.self) { try TrustRoots(keys: [], threshold: 1) }
        let text = String(decoding: try document(version: 1).encoded(), as: UTF8.self)
        let zero = text.replacingOccurrences(of: "\"threshold\" : 2", with: "\"threshold\" : 0")
        #expect(zero != text)
        #expect(throws: TrustDocumentError.self) { try SignedTrustDocument.decode(Array(zero.utf8)) }
    }

    @Test("A root key listed twice is refused; roots are kept sorted so equal sets compare equal")
    func rootsDistinct() throws {
        #expect(throws: TrustDocumentError.self) {
            try TrustRoots(keys: [rootA.publicKey, rootA.publicKey], threshold: 2)
        }
        let one = try TrustRoots(keys: [rootA, rootB].map(\.publicKey), threshold: 1)
        let other = try TrustRoots(keys: [rootB, rootA].map(\.publicKey), threshold: 1)
        #expect(one == other)
    }

    // MARK: signatures

    @Test("Duplicate signatures by one key count once toward the threshold")
    func duplicateSignaturesCountOnce() throws {
        var doubled = try document(version: 2).signed(with: rootA)
        doubled.signatures.append(doubled.signatures[0])
        doubled.signatures.append(doubled.signatures[0])
        #expect(doubled.validSigners(among: try roots) == [rootA.publicKey])
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        #expect(throws: below(2, .current, try roots, signedBy: [rootA])) { try evaluate(doubled, current: v1) }
    }

    @Test("Signatures by keys that are not roots are ignored")
    func nonRootSignaturesIgnored() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2).signed(with: rootA).signed(with: bors).signed(with: newX)
        #expect(v2.validSigners(among: try roots) == [rootA.publicKey])
        #expect(throws: below(2, .current, try roots, signedBy: [rootA])) { try evaluate(v2, current: v1) }
    }

    @Test("A signature of other bytes does not count (tampered content)")
    func tamperedSignatureInvalid() throws {
        let signed = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let tampered = SignedTrustDocument(document: try document(version: 1, expiresIn: 999_999).document)
        var forged = tampered
        forged.signatures = signed.signatures
        #expect(forged.validSigners(among: try roots).isEmpty)
        #expect(throws: TrustDocumentError.self) { try evaluate(forged, current: nil) }
    }

    @Test("Signing twice with one key is idempotent")
    func signingIdempotent() throws {
        let once = try document(version: 1).signed(with: rootA)
        #expect(once.signed(with: rootA) == once)
        #expect(once.signed(with: rootA).signatures.count == 1)
    }

    // MARK: update rules

    @Test("The first document must be signed by a threshold of the configured roots")
    func firstDocumentConfiguredRoots() throws {
        let v1 = try document(version: 1)
        #expect(throws: below(1, .configured, try roots, signedBy: [rootA])) {
            try evaluate(v1.signed(with: rootA), current: nil)
        }
        let valid = v1.signed(with: rootA).signed(with: rootC)
        #expect(try evaluate(valid, current: nil) == .accepted(valid))
    }

    @Test("A first document under other roots walks back toward the configured roots, and stops at version 1")
    func firstDocumentOtherRoots() throws {
        let foreign = try document(version: 3, roots: try newRoots).signed(with: newX).signed(with: newY)
        #expect(try evaluate(foreign, current: nil) == .needsIntermediate(version: 2))
        let first = try document(version: 1, roots: try newRoots).signed(with: newX).signed(with: newY)
        #expect(throws: TrustDocumentError.notConfiguredRoots(version: 1)) { try evaluate(first, current: nil) }
        // Unsigned by its own roots: nobody is sent looking for anything.
        let unsigned = try document(version: 3, roots: try newRoots).signed(with: newX)
        #expect(throws: TrustDocumentError.self) { try evaluate(unsigned, current: nil) }
    }

    @Test("Same roots: any higher version signed by a threshold of the current roots is accepted")
    func sameRootsHigherVersion() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v5 = try document(version: 5).signed(with: rootB).signed(with: rootC)
        #expect(try evaluate(v5, current: v1) == .accepted(v5))
        let one = try document(version: 5).signed(with: rootB)
        #expect(throws: TrustDocumentError.self) { try evaluate(one, current: v1) }
    }

    @Test("A lower version is a rollback")
    func rollback() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2).signed(with: rootA).signed(with: rootB)
        #expect(throws: TrustDocumentError.rollback(candidate: 1, current: 2)) { try evaluate(v1, current: v2) }
    }

    @Test("The same version: same bytes is already current, different bytes is refused")
    func sameVersion() throws {
        let v2 = try document(version: 2).signed(with: rootA).signed(with: rootB)
        // More or other signatures over the same bytes are the same document.
        let resigned = try document(version: 2).signed(with: rootC)
        #expect(try evaluate(resigned, current: v2) == .alreadyCurrent)
        let other = try document(version: 2, expiresIn: 7200).signed(with: rootA).signed(with: rootB)
        #expect(throws: TrustDocumentError.conflictingVersion(version: 2)) { try evaluate(other, current: v2) }
    }

    @Test("An expired document is refused (freeze), also as a first document")
    func expired() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let stale = try document(version: 2, expiresIn: -1).signed(with: rootA).signed(with: rootB)
        let refusal = TrustDocumentError.expired(version: 2, expires: now.addingTimeInterval(-1), now: now)
        #expect(throws: refusal) { try evaluate(stale, current: v1) }
        #expect(throws: refusal) { try evaluate(stale, current: nil) }
        // Expiry is the instant itself: at `now` it no longer holds.
        let atNow = try document(version: 2, expiresIn: 0).signed(with: rootA).signed(with: rootB)
        #expect(throws: TrustDocumentError.expired(version: 2, expires: now, now: now)) {
            try evaluate(atNow, current: v1)
        }
    }

    @Test("Rotation: accepted as exactly the next version, signed by old and new thresholds")
    func rotationAccepted() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2, roots: try newRoots)
            .signed(with: rootA).signed(with: rootC).signed(with: newX).signed(with: newY)
        #expect(try evaluate(v2, current: v1) == .accepted(v2))
        // And then the new roots govern: the old ones no longer can.
        let v3old = try document(version: 3, roots: try newRoots).signed(with: rootA).signed(with: rootB)
        #expect(throws: TrustDocumentError.self) { try evaluate(v3old, current: v2) }
        let v3 = try document(version: 3, roots: try newRoots).signed(with: newX).signed(with: newY)
        #expect(try evaluate(v3, current: v2) == .accepted(v3))
    }

    @Test("Rotation without the old roots' threshold is refused")
    func rotationNeedsOldThreshold() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2, roots: try newRoots)
            .signed(with: rootA).signed(with: newX).signed(with: newY)
        #expect(throws: below(2, .current, try roots, signedBy: [rootA])) { try evaluate(v2, current: v1) }
    }

    @Test("Rotation without the new roots' threshold is refused")
    func rotationNeedsNewThreshold() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2, roots: try newRoots)
            .signed(with: rootA).signed(with: rootB).signed(with: newX)
        #expect(throws: below(2, .candidate, try newRoots, signedBy: [newX])) { try evaluate(v2, current: v1) }
    }

    @Test("Rotation that skips a version asks for the next one first")
    func rotationSkipsVersion() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v4 = try document(version: 4, roots: try newRoots)
            .signed(with: rootA).signed(with: rootB).signed(with: newX).signed(with: newY)
        #expect(try evaluate(v4, current: v1) == .needsIntermediate(version: 2))
    }

    @Test("A rotation step is accepted even expired (a link to newer documents, as TUF's intermediate roots)")
    func expiredRotationStep() throws {
        let v1 = try document(version: 1).signed(with: rootA).signed(with: rootB)
        let v2 = try document(version: 2, roots: try newRoots, expiresIn: -86400)
            .signed(with: rootA).signed(with: rootB).signed(with: newX).signed(with: newY)
        #expect(try evaluate(v2, current: v1) == .accepted(v2))
        let v3 = try document(version: 3, roots: try newRoots, expiresIn: -1).signed(with: newX).signed(with: newY)
        #expect(throws: TrustDocumentError.self) { try evaluate(v3, current: v2) }
    }

    // MARK: policy

    @Test("The document's policy refuses withdrawn manifests, after the signature check")
    func withdrawnManifest() throws {
        let header = try Manifest.sign(
            repository: "r/x", commit: "c1", createdAt: now.nanosecondsSinceEpoch, cacheKey: [:],
            body: ManifestBody(entries: []), with: bors
        ).signed
        let trusting = try document(version: 1).document.policy
        #expect(try trusting.evaluate(header, now: now).name == "bors")
        let withdrawing = try document(version: 2, withdrawn: [header.id]).document.policy
        #expect(throws: TrustError.withdrawn(manifest: header.id)) { try withdrawing.evaluate(header, now: now) }
    }

    // MARK: format

    @Test("decode(encoded()) round-trips, and the file is deterministic")
    func roundTrip() throws {
        let original = SignedTrustDocument(
            document: TrustDocument(
                version: 7, expires: now.addingTimeInterval(0.75), roots: try roots,
                keys: [
                    TrustedKey(
                        name: "z-last", publicKey: newX.publicKey,
                        repositories: [RepositoryGlob("b/*"), RepositoryGlob("a/**")],
                        validFrom: now.addingTimeInterval(-100), validUntil: now.addingTimeInterval(100),
                        revoked: true),
                    TrustedKey(name: "a-first", publicKey: bors.publicKey, repositories: [RepositoryGlob("r/*")]),
                ],
                withdrawn: [Blake2b.hash(Array("one".utf8)), Blake2b.hash(Array("two".utf8))])
        ).signed(with: rootA).signed(with: rootB)
        #expect(original.document.keys.map(\.name) == ["a-first", "z-last"])
        #expect(original.document.expires == now)
        let bytes = original.encoded()
        let decoded = try SignedTrustDocument.decode(bytes)
        #expect(decoded == original)
        #expect(decoded.encoded() == bytes)
        #expect(try TrustDocument(canonical: original.signedBytes) == original.document)
        #expect(decoded.meetsThreshold(of: try roots))
    }

    @Test("Unknown fields are refused wherever they are")
    func unknownFields() throws {
        let text = String(decoding: try document(version: 1).signed(with: rootA).encoded(), as: UTF8.self)
        for (anchor, extra) in [
            ("\"signed\" : {", "\"signed\" : { \"extra\": 1,"),
            ("\"kindling-trust-document\" : 1,", "\"kindling-trust-document\" : 1, \"note\": \"x\","),
            ("\"name\" : \"bors\",", "\"name\" : \"bors\", \"scope\": \"all\","),
            ("\"threshold\" : 2", "\"threshold\" : 2, \"next\": []"),
            ("\"signature\" : ", "\"comment\": \"hi\", \"signature\" : "),
        ] {
            let changed = text.replacingOccurrences(of: anchor, with: extra)
            #expect(changed != text, "anchor \(anchor) not found")
            #expect(throws: TrustDocumentError.self) { try SignedTrustDocument.decode(Array(changed.utf8)) }
        }
    }

    @Test("A field named twice in one object is refused (JSON readers disagree on which counts)")
    func repeatedFields() throws {
        let text = String(decoding: try document(version: 1).signed(with: rootA).encoded(), as: UTF8.self)
        for (anchor, repeated) in [
            ("\"version\" : 1", "\"version\" : 1, \"version\" : 9"),
            ("\"threshold\" : 2", "\"threshold\" : 2, \"threshold\" : 1"),
            ("\"name\" : \"bors\",", "\"name\" : \"bors\", \"name\" : \"evil\","),
            ("\"kindling-trust-document\" : 1,", "\"kindling-trust-document\" : 1, \"kindling-trust-document\" : 1,"),
            ("\"version\" : 1", "\"vers\\u0069on\" : 1"),
        ] {
            let changed = text.replacingOccurrences(of: anchor, with: repeated)
            #expect(changed != text, "anchor \(anchor) not found")
            #expect(throws: TrustDocumentError.self, "\(repeated)") {
                try SignedTrustDocument.decode(Array(changed.utf8))
            }
        }
        // The same names in different objects are fine: each key object has its own.
        #expect(try SignedTrustDocument.decode(Array(text.utf8)).document.version == 1)
    }

    @Test("Oversized files and counts beyond the limits are refused")
    func bounds() throws {
        let big = [UInt8](repeating: UInt8(ascii: " "), count: SignedTrustDocument.maximumEncodedSize + 1)
        #expect(throws: TrustDocumentError.tooLarge(size: big.count, limit: SignedTrustDocument.maximumEncodedSize)) {
            try SignedTrustDocument.decode(big)
        }
        var many = try document(version: 1).document
        many.withdrawn = Set(
            (0...TrustDocument.maximumWithdrawnCount).map {
                Blake2b.hash([UInt8(truncatingIfNeeded: $0), UInt8($0 >> 8)])
            })
        #expect(throws: TrustDocumentError.self) { try many.validate() }
        #expect(throws: TrustDocumentError.self) {
            try SignedTrustDocument.decode(SignedTrustDocument(document: many).encoded())
        }
        var zero = try document(version: 1).document
        zero.version = 0
        #expect(throws: TrustDocumentError.self) { try zero.validate() }
    }

    @Test("Canonical bytes: trailing bytes, unsorted sets and non-minimal integers are refused")
    func canonicalStrict() throws {
        let bytes = try document(version: 1, withdrawn: [Blake2b.hash([1]), Blake2b.hash([2])]).signedBytes
        #expect(throws: TrustDocumentError.self) { try TrustDocument(canonical: bytes + [0]) }
        // Swap the two withdrawn ids (the last 64 bytes): no longer ascending.
        let swapped = Array(bytes.dropLast(64)) + Array(bytes.suffix(32)) + Array(bytes.suffix(64).prefix(32))
        #expect(throws: TrustDocumentError.self) { try TrustDocument(canonical: swapped) }
        // The version (byte 5, value 1) written as two bytes 0x81 0x00.
        #expect(bytes[5] == 1)
        let padded = Array(bytes[..<5]) + [0x81, 0x00] + Array(bytes[6...])
        #expect(throws: TrustDocumentError.self) { try TrustDocument(canonical: padded) }
    }
}
