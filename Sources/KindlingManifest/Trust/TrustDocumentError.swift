public import Foundation
public import KindlingCrypto

/// Why a trust document cannot be read, built or accepted (Specs/trust.md, "Trust documents"). Each message says
/// what is wrong and what to do.
public enum TrustDocumentError: Error, Equatable, Sendable, CustomStringConvertible {
    /// Which roots a threshold was checked against.
    public enum Roots: String, Sendable, Equatable {
        /// The roots of the document the node holds now.
        case current
        /// The roots the node is configured with (it holds no document yet).
        case configured
        /// The roots the candidate document names for itself (a rotation, or its own validity).
        case candidate
    }

    /// Roots that cannot govern anything: no keys, a repeated key, a threshold below 1 or above the key count.
    case invalidRoots(reason: String)
    /// Content that breaks a rule of the format (version 0, a repeated name, a field out of its bounds).
    case invalidDocument(reason: String)
    /// The file is larger than `SignedTrustDocument.maximumEncodedSize`.
    case tooLarge(size: Int, limit: Int)
    /// The file is not a trust document: bad JSON, a missing, unknown or mistyped field.
    case malformed(reason: String)
    /// A format version this kindling does not know.
    case unsupportedFormat(version: UInt64)
    /// Canonical bytes that are not the one valid encoding of a document.
    case badEncoding(FormatError)
    /// A lower version than the one held: an old document replayed.
    case rollback(candidate: UInt64, current: UInt64)
    /// The same version as the one held with different content: two documents were signed for one version.
    case conflictingVersion(version: UInt64)
    /// Expired at the update's `now`: a frozen view of trust, kept from a newer document.
    case expired(version: UInt64, expires: Date, now: Date)
    /// Fewer valid signatures by distinct keys of `roots` than their threshold.
    case belowThreshold(version: UInt64, roots: Roots, valid: Int, threshold: Int, missing: [PublicKey])
    /// A first document whose roots are not the configured ones, with no earlier version to chain from.
    case notConfiguredRoots(version: UInt64)

    public var description: String {
        switch self {
        case .invalidRoots(let reason):
            return "invalid roots: \(reason)"
        case .invalidDocument(let reason):
            return "invalid trust document: \(reason)"
        case .tooLarge(let size, let limit):
            return "trust document of \(size) bytes is larger than the limit of \(limit) bytes; it is not a trust "
                + "document, or it lists too much (withdraw fewer manifests, drop retired keys)"
        case .malformed(let reason):
            return "malformed trust document: \(reason)"
        case .unsupportedFormat(let version):
            return "trust document format version \(version) is not supported by this kindling; upgrade kindling"
        case .badEncoding(let error):
            return "invalid trust document encoding: \(error)"
        case .rollback(let candidate, let current):
            return "trust document version \(candidate) is older than the version \(current) already held: refused "
                + "(an old document replayed); publish a document with a version above \(current)"
        case .conflictingVersion(let version):
            return "trust document version \(version) differs from the version \(version) already held: two "
                + "different documents were signed for one version; the roots must sign a new version "
                + "(kindling trust edit bumps it)"
        case .expired(let version, let expires, let now):
            return "trust document version \(version) expired at \(TrustFile.formatDate(expires)) (now "
                + "\(TrustFile.formatDate(now))): refused, a newer document may be kept from this node; the roots "
                + "must sign a fresh one ('kindling trust edit DOC --expires 90d', then 'kindling trust sign')"
        case .belowThreshold(let version, let roots, let valid, let threshold, let missing):
            let whose: String
            switch roots {
            case .current: whose = "the current roots"
            case .configured: whose = "the configured roots"
            case .candidate: whose = "its own roots"
            }
            let list = missing.map(\.text).joined(separator: " or ")
            return "trust document version \(version) has \(valid) of \(threshold) required signatures of \(whose): "
                + "missing a signature from \(list.isEmpty ? "another root" : list); have the holders of these root "
                + "keys sign it ('kindling trust sign DOC --root-key FILE')"
        case .notConfiguredRoots(let version):
            return "trust document version \(version) is not governed by the configured roots and no earlier "
                + "version leads to it from them: check the node's --root keys and --threshold against "
                + "'kindling trust show' of the current document"
        }
    }
}
