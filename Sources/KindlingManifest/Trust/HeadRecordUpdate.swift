public import Foundation
public import KindlingCrypto

/// Why a head record is not read or not accepted (Specs/freshness.md). Only `badSignature` is proof of lying.
public enum HeadRecordError: Error, Equatable, Sendable, CustomStringConvertible {
    case tooLarge(size: Int, limit: Int)
    case badEncoding(FormatError)
    /// The key is not trusted for the repository by the policy in force: disagreement, dropped quietly.
    case untrusted(reason: String)
    /// The signature does not verify under the key the record names (a trusted one): a forgery.
    case badSignature(repository: String, publisher: PublicKey)
    /// Issued further in the future than the policy's clock skew allows.
    case issuedInFuture(issued: Date, now: Date)
    /// Expired at `now`: it cannot say anything about the newest builds any more.
    case expired(sequence: UInt64, expires: Date, now: Date)
    /// A lower sequence than the one held for this repository and key: an old record replayed.
    case rollback(candidate: UInt64, held: UInt64)
    /// The same sequence as the one held with other content: the key signed two records for one sequence.
    case conflictingSequence(UInt64)

    public var description: String {
        switch self {
        case .tooLarge(let size, let limit):
            return "head record of \(size) bytes is larger than the limit of \(limit) bytes"
        case .badEncoding(let error):
            return "invalid head record: \(error)"
        case .untrusted(let reason):
            return "head record from a key not trusted for its repository: \(reason)"
        case .badSignature(let repository, let publisher):
            return "head record for \(repository) does not verify under the key it names (\(publisher.text)): forged"
        case .issuedInFuture(let issued, let now):
            return "head record issued at \(TrustFile.formatDate(issued)), in the future (now "
                + "\(TrustFile.formatDate(now))); check the publisher's clock"
        case .expired(let sequence, let expires, let now):
            return "head record \(sequence) expired at \(TrustFile.formatDate(expires)) (now "
                + "\(TrustFile.formatDate(now)))"
        case .rollback(let candidate, let held):
            return "head record sequence \(candidate) is lower than the sequence \(held) already held: an old record "
                + "replayed, refused"
        case .conflictingSequence(let sequence):
            return "head record sequence \(sequence) differs from the record of that sequence already held: the key "
                + "signed two records for one sequence (broken or stolen)"
        }
    }

    /// True only for a forgery: the one refusal that counts against the peer that sent it.
    public var isProofOfLying: Bool {
        if case .badSignature = self { return true }
        return false
    }
}

/// The rule a node applies to a head record (Specs/freshness.md, "Acceptance"), in this order. `now` is fixed
/// once by the caller.
public enum HeadRecordUpdate {
    public enum Outcome: Sendable, Equatable {
        /// Keep it (durably, before relaying it): its sequence is above the one held.
        case accepted
        /// The very record held already: nothing to do.
        case alreadyHeld
    }

    public static func evaluate(
        _ candidate: SignedHeadRecord, held: SignedHeadRecord?, policy: TrustPolicy, now: Date
    ) throws(HeadRecordError) -> Outcome {
        let record = candidate.record
        // 1. Trust before the signature: an untrusted key's record is disagreement whatever its signature.
        _ = try policy.headRecordKey(record.publisher, repository: record.repository, at: record.issued)
        // 2. A trusted key's record that does not verify is a lie.
        guard candidate.hasValidSignature else {
            throw .badSignature(repository: record.repository.text, publisher: record.publisher)
        }
        // 3. Not from the future, 4. not expired.
        guard record.issued.timeIntervalSince(now) <= policy.allowedClockSkew else {
            throw .issuedInFuture(issued: record.issued, now: now)
        }
        guard record.expires > now else { throw .expired(sequence: record.sequence, expires: record.expires, now: now) }
        // 5. Never back: only a higher sequence replaces the one held.
        guard let held else { return .accepted }
        if record.sequence < held.record.sequence {
            throw .rollback(candidate: record.sequence, held: held.record.sequence)
        }
        if record.sequence == held.record.sequence {
            guard candidate == held else { throw .conflictingSequence(record.sequence) }
            return .alreadyHeld
        }
        return .accepted
    }

    /// The sequence a publisher signs next: above the one it signed last, and at least the time in nanoseconds,
    /// so that a publisher whose store was wiped still goes forward.
    public static func nextSequence(after previous: UInt64?, now: Date) -> UInt64 {
        let clock = max(1, min(now.nanosecondsSinceEpoch, HeadRecord.maximumSequence))
        guard let previous else { return clock }
        return max(clock, min(previous + 1, HeadRecord.maximumSequence))
    }
}

extension TrustPolicy {
    /// The trusted key allowed to sign head records of `repository` issued at `time`: known, not revoked, scoped to
    /// the repository, and valid at that time.
    public func headRecordKey(
        _ publisher: PublicKey, repository: RepositoryName, at time: Date
    ) throws(HeadRecordError) -> TrustedKey {
        guard let key = trust.keys.first(where: { $0.publicKey == publisher }) else {
            throw .untrusted(reason: "\(publisher.text) is not a trusted key")
        }
        guard !key.revoked else { throw .untrusted(reason: "key '\(key.name)' is revoked") }
        guard key.repositories.contains(where: { $0.matches(repository) }) else {
            throw .untrusted(reason: "key '\(key.name)' may not sign for \(repository.text)")
        }
        if let from = key.validFrom, time < from {
            throw .untrusted(reason: "key '\(key.name)' is not valid yet at \(TrustFile.formatDate(time))")
        }
        if let until = key.validUntil, time > until {
            throw .untrusted(reason: "key '\(key.name)' is no longer valid at \(TrustFile.formatDate(time))")
        }
        return key
    }
}
