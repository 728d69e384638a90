import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

/// Head records (Specs/freshness.md): the vectors of an independent implementation (tools/spec/head_vectors.py),
/// and the acceptance rule one rule at a time.
@Suite("Head records")
struct HeadRecordTests {
    struct Vector {
        let root: [String: Any]

        init() throws {
            let url = SpecVectorTests.vectorsDirectory.appendingPathComponent("head-record-v1.json")
            root = try need(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        }

        func list(_ field: String) throws -> [[String: Any]] {
            try need(root[field] as? [[String: Any]], "\(field)")
        }

        func policy() throws -> TrustPolicy {
            var keys: [TrustedKey] = []
            for entry in try list("policy") {
                keys.append(
                    TrustedKey(
                        name: try need(entry["name"] as? String),
                        publicKey: try PublicKey(text: try need(entry["publicKey"] as? String)),
                        repositories: try need(entry["repositories"] as? [String]).map(RepositoryGlob.init),
                        validFrom: (entry["validFrom"] as? String).flatMap(TrustFile.parseDate),
                        validUntil: (entry["validUntil"] as? String).flatMap(TrustFile.parseDate),
                        revoked: entry["revoked"] as? Bool ?? false))
            }
            let skew = try need(root["allowedClockSkew"] as? Double)
            return TrustPolicy(trust: TrustFile(keys: keys), allowedClockSkew: skew)
        }

        func records() throws -> [String: SignedHeadRecord] {
            var records: [String: SignedHeadRecord] = [:]
            for entry in try list("records") {
                let bytes = try Hex.decode(try need(entry["encodedHex"] as? String))
                records[try need(entry["name"] as? String)] = try SignedHeadRecord.decode(bytes)
            }
            return records
        }
    }

    @Test("Canonical bytes, signing input and signature match the independent implementation; re-signing agrees")
    func vectors() throws {
        let vector = try Vector()
        let seeds = try need(vector.root["seeds"] as? [String: String])
        let keys = try seeds.mapValues { try SigningKey(seed: try Hex.decode($0)) }
        let records = try vector.records()
        #expect(records.count == 13)
        for entry in try vector.list("records") {
            let name = try need(entry["name"] as? String)
            let signed = try need(records[name])
            #expect(Hex.encode(signed.signedBytes) == entry["canonicalHex"] as? String, "\(name)")
            #expect(Hex.encode(signed.signingInput) == entry["signingInputHex"] as? String, "\(name)")
            #expect(Hex.encode(signed.signature.bytes) == entry["signatureHex"] as? String, "\(name)")
            #expect(Hex.encode(signed.encoded()) == entry["encodedHex"] as? String, "\(name)")
            #expect(signed.record.encoded() == signed.signedBytes, "\(name)")
            // The same content signed here by the key that names it gives the same bytes (deterministic Ed25519).
            if let key = keys.values.first(where: { $0.publicKey == signed.record.publisher }), name != "forged" {
                #expect(SignedHeadRecord.sign(signed.record, with: key) == signed, "\(name)")
            }
        }
        let seq6 = try need(records["seq6"]).record
        #expect(seq6.entries.map(\.branch) == ["auto", "master", "master"])
        #expect(
            seq6.entry(branch: "master", profile: "release")?.manifest
                == Digest(bytes: [UInt8](repeating: 0x22, count: 32)))
    }

    @Test("The acceptance rule gives the same outcomes as the independent implementation")
    func updates() throws {
        let vector = try Vector()
        let policy = try vector.policy()
        let records = try vector.records()
        let now = try need(TrustFile.parseDate(try need(vector.root["now"] as? String)))
        let updates = try vector.list("updates")
        #expect(updates.count == 15)
        for update in updates {
            let candidate = try need(records[try need(update["candidate"] as? String)])
            let held = try (update["held"] as? String).map { try need(records[$0]) }
            #expect(
                Self.outcome(candidate, held: held, policy: policy, now: now) == update["outcome"] as? String,
                "\(update)")
        }
    }

    static func outcome(
        _ candidate: SignedHeadRecord, held: SignedHeadRecord?, policy: TrustPolicy, now: Date
    )
        -> String
    {
        do {
            switch try HeadRecordUpdate.evaluate(candidate, held: held, policy: policy, now: now) {
            case .accepted: return "accepted"
            case .alreadyHeld: return "alreadyHeld"
            }
        } catch {
            switch error {
            case .untrusted: return "untrusted"
            case .badSignature: return "badSignature"
            case .issuedInFuture: return "issuedInFuture"
            case .expired: return "expired"
            case .rollback: return "rollback"
            case .conflictingSequence: return "conflictingSequence"
            default: return "\(error)"
            }
        }
    }

    @Test("Every refused encoding of the vectors is refused, and so is anything larger than the limit")
    func refusals() throws {
        let refused = try Vector().list("refused")
        #expect(refused.count == 16)
        for entry in refused {
            let bytes = try Hex.decode(try need(entry["hex"] as? String))
            #expect(throws: HeadRecordError.self, "\(entry["what"] ?? "")") { try SignedHeadRecord.decode(bytes) }
        }
        let huge = [UInt8](repeating: 0, count: SignedHeadRecord.maximumEncodedSize + 1)
        #expect(throws: HeadRecordError.tooLarge(size: huge.count, limit: SignedHeadRecord.maximumEncodedSize)) {
            try SignedHeadRecord.decode(huge)
        }
    }

    // MARK: The rule, one case at a time

    static let bors = Fixtures.key(42)
    static let policy = TrustPolicy(trust: Fixtures.trust([("bors", bors)], repositories: ["demo/*"]))

    static func record(
        _ sequence: UInt64, repository: String = "demo/ws", issued: Date = Date(), lifetime: TimeInterval = 3600,
        commit: String = "c1", key: SigningKey = bors
    ) throws -> SignedHeadRecord {
        let entry = HeadEntry(
            branch: "main", profile: "dev", commit: commit, manifest: Blake2b.hash(Array(commit.utf8)))
        return SignedHeadRecord.sign(
            HeadRecord(
                repository: try RepositoryName(repository), publisher: key.publicKey, sequence: sequence,
                issued: issued, expires: issued.addingTimeInterval(lifetime), entries: [entry]),
            with: key)
    }

    @Test("Only a higher sequence replaces the one held: lower is a rollback, another of one sequence a conflict")
    func sequenceRule() throws {
        let now = Date()
        let five = try Self.record(5)
        let six = try Self.record(6, commit: "c2")
        #expect(try HeadRecordUpdate.evaluate(six, held: five, policy: Self.policy, now: now) == .accepted)
        #expect(try HeadRecordUpdate.evaluate(five, held: five, policy: Self.policy, now: now) == .alreadyHeld)
        #expect(throws: HeadRecordError.rollback(candidate: 5, held: 6)) {
            try HeadRecordUpdate.evaluate(five, held: six, policy: Self.policy, now: now)
        }
        #expect(throws: HeadRecordError.conflictingSequence(5)) {
            let other = try Self.record(5, commit: "other")
            return try HeadRecordUpdate.evaluate(other, held: five, policy: Self.policy, now: now)
        }
        // The publisher's next sequence goes forward from the last one and from the clock.
        #expect(HeadRecordUpdate.nextSequence(after: 1 << 62, now: now) == (1 << 62) + 1)
        #expect(HeadRecordUpdate.nextSequence(after: 7, now: now) == now.nanosecondsSinceEpoch)
        #expect(HeadRecordUpdate.nextSequence(after: nil, now: Date(timeIntervalSince1970: 0)) == 1)
    }

    @Test("An expired record is refused; one issued beyond the clock skew too")
    func expiry() throws {
        let now = Date()
        let stale = try Self.record(9, issued: now.addingTimeInterval(-7200), lifetime: 3600)
        #expect(Self.outcome(stale, held: nil, policy: Self.policy, now: now) == "expired")
        let future = try Self.record(9, issued: now.addingTimeInterval(3600))
        #expect(Self.outcome(future, held: nil, policy: Self.policy, now: now) == "issuedInFuture")
        #expect(Self.outcome(try Self.record(9), held: nil, policy: Self.policy, now: now) == "accepted")
    }

    @Test("An untrusted key or repository is disagreement; a bad signature under a trusted key is proof of lying")
    func trustAndSignature() throws {
        let now = Date()
        let stranger = try Self.record(3, key: Fixtures.key(7))
        let otherRepository = try Self.record(3, repository: "elsewhere/x")
        for candidate in [stranger, otherRepository] {
            do {
                _ = try HeadRecordUpdate.evaluate(candidate, held: nil, policy: Self.policy, now: now)
                Issue.record("accepted an untrusted record")
            } catch {
                #expect(!error.isProofOfLying)
                guard case .untrusted = error else {
                    Issue.record("\(error)")
                    continue
                }
            }
        }
        // Bytes of a record naming bors, with one signature byte changed.
        var bytes = try Self.record(3).encoded()
        bytes[bytes.count - 1] ^= 1
        let forged = try SignedHeadRecord.decode(bytes)
        do {
            _ = try HeadRecordUpdate.evaluate(forged, held: nil, policy: Self.policy, now: now)
            Issue.record("accepted a forged record")
        } catch {
            #expect(error.isProofOfLying)
        }
        // A forgery by a key nobody trusts is not checked at all: dropped as disagreement.
        var strangerBytes = stranger.encoded()
        strangerBytes[strangerBytes.count - 1] ^= 1
        #expect(
            Self.outcome(try SignedHeadRecord.decode(strangerBytes), held: nil, policy: Self.policy, now: now)
                == "untrusted")
        // Revoking the key makes its records untrusted.
        var revoked = Fixtures.trust([("bors", Self.bors)], repositories: ["demo/*"])
        revoked.keys[0].revoked = true
        #expect(
            Self.outcome(try Self.record(3), held: nil, policy: TrustPolicy(trust: revoked), now: now) == "untrusted")
    }

    @Test("A domain of its own: a head record signature is not a manifest's or a trust document's")
    func domain() {
        #expect(SignedHeadRecord.signingDomain == Array("kindling-head-record-v1".utf8) + [0])
        #expect(SignedHeadRecord.signingDomain != SignedTrustDocument.signingDomain)
    }
}
