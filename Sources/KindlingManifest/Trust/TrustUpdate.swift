public import Foundation

/// The pure rule that decides whether a node takes a trust document (Specs/trust.md, "Update rules"): TUF's
/// client workflow, adapted to one document that carries its roots. No clock and no I/O: `now` is fixed once by
/// the caller per update, and the caller persists an accepted document before it uses it.
public enum TrustUpdate {
    public enum Outcome: Sendable, Equatable {
        /// Verify passed: the caller persists it, then uses it.
        case accepted(SignedTrustDocument)
        /// Same version and same signed bytes as the one held: nothing to do (not an error).
        case alreadyCurrent
        /// The roots changed in between: ask peers for this version first, then offer the candidate again.
        case needsIntermediate(version: UInt64)
    }

    /// Rules, in order (the first that fails is the answer):
    /// 1. a lower version than `current` is a rollback; the same version is `.alreadyCurrent` when its signed bytes
    ///    are equal, refused otherwise;
    /// 2. the roots that govern it are `current`'s, or the configured ones when `current` is nil;
    /// 3. same roots: a threshold of them must have signed it;
    /// 4. other roots (a rotation): a threshold of its own roots must have signed it; then it must be exactly the
    ///    next version (else `.needsIntermediate`, or, with no current document, the version before it, down to 1),
    ///    and a threshold of the governing roots must have signed it too;
    /// 5. it must not have expired at `now` (freeze), except a rotation step of rule 4: like TUF's intermediate
    ///    root files, it links the chain to newer documents, and the caller checks the newest one's expiry.
    public static func evaluate(
        candidate: SignedTrustDocument, current: SignedTrustDocument?, configuredRoots: TrustRoots, now: Date
    ) throws(TrustDocumentError) -> Outcome {
        let document = candidate.document
        if let current {
            let held = current.document.version
            guard document.version >= held else { throw .rollback(candidate: document.version, current: held) }
            if document.version == held {
                guard candidate.signedBytes == current.signedBytes else {
                    throw .conflictingVersion(version: document.version)
                }
                return .alreadyCurrent
            }
        }
        let governing = current?.document.roots ?? configuredRoots
        let role: TrustDocumentError.Roots = current == nil ? .configured : .current
        if document.roots == governing {
            try candidate.requireThreshold(of: governing, as: role)
            try requireUnexpired(document, now: now)
            return .accepted(candidate)
        }
        // A rotation. Its own roots first: a document nobody of its roots signed sends no one looking for more.
        try candidate.requireThreshold(of: document.roots, as: .candidate)
        guard let current else {
            // Walk back toward the first version the configured roots govern.
            guard document.version > 1 else { throw .notConfiguredRoots(version: document.version) }
            return .needsIntermediate(version: document.version - 1)
        }
        let next = current.document.version + 1
        guard document.version == next else { return .needsIntermediate(version: next) }
        try candidate.requireThreshold(of: governing, as: role)
        return .accepted(candidate)
    }

    private static func requireUnexpired(_ document: TrustDocument, now: Date) throws(TrustDocumentError) {
        guard now < document.expires else {
            throw .expired(version: document.version, expires: document.expires, now: now)
        }
    }
}
