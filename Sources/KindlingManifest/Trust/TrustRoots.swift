public import KindlingCrypto

/// The root keys of a project and how many of them must sign a trust document (Specs/trust.md, "Trust documents").
/// A node is configured with these only; the publisher keys come from documents the roots sign.
public struct TrustRoots: Sendable, Hashable {
    /// At most this many root keys: a signature check per key and per signature stays cheap.
    public static let maximumKeyCount = 32

    /// Distinct, sorted by their bytes (so two equal sets of roots compare equal and encode alike).
    public let keys: [PublicKey]
    /// How many distinct keys of `keys` must sign: 1 ... keys.count.
    public let threshold: Int

    public init(keys: [PublicKey], threshold: Int) throws(TrustDocumentError) {
        let sorted = keys.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }
        guard !sorted.isEmpty else { throw .invalidRoots(reason: "no root keys; give at least one") }
        guard sorted.count <= Self.maximumKeyCount else {
            throw .invalidRoots(reason: "\(sorted.count) root keys, more than the limit of \(Self.maximumKeyCount)")
        }
        for (first, second) in zip(sorted, sorted.dropFirst()) where first == second {
            throw .invalidRoots(reason: "root key \(first.text) is listed twice; each key counts once")
        }
        // A threshold of 0 would accept a document nobody signed (go-tuf CVE-2026-23992).
        guard threshold >= 1 else {
            throw .invalidRoots(reason: "threshold \(threshold) is below 1; at least one root must sign")
        }
        guard threshold <= sorted.count else {
            throw .invalidRoots(
                reason: "threshold \(threshold) is above the \(sorted.count) root keys; no document could be valid")
        }
        self.keys = sorted
        self.threshold = threshold
    }

    /// "2 of 3 roots" and their keys, for messages.
    public var summary: String { "\(threshold) of \(keys.count) roots" }
}
