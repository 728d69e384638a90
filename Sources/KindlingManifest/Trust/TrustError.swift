public import KindlingCrypto

/// Why a manifest is not accepted, or a trust file cannot be used. Each message says what to do next.
public enum TrustError: Error, Equatable, Sendable, CustomStringConvertible {
    case unknownKey(PublicKey)
    case badSignature(manifest: Digest)
    case withdrawn(manifest: Digest)
    case revokedKey(name: String)
    case repositoryNotAllowed(key: String, repository: String, allowed: [String])
    case outsideValidity(key: String, createdAt: String, window: String)
    case createdInFuture(createdAt: String)
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    case malformed(path: String, reason: String)
    case duplicateKey(name: String)
    case unsafeFile(GuardedFileError)

    public var description: String {
        switch self {
        case .unknownKey(let key):
            return "manifest is signed by \(key.text), which is not in the trust file; "
                + "if you trust it, add it with 'kindling trust add'"
        case .badSignature(let manifest):
            return
                "manifest \(manifest.short) has an invalid signature: it was tampered with or corrupted; it was not "
                    + "used"
        case .withdrawn(let manifest):
            return "manifest \(manifest.short) is withdrawn by the trust document; it is not used (build or fetch "
                + "another snapshot)"
        case .revokedKey(let name):
            return "manifest is signed by key '\(name)', which the trust file marks as revoked"
        case .repositoryNotAllowed(let key, let repository, let allowed):
            return
                "key '\(key)' may not sign for repository '\(repository)' (allowed: \(allowed.joined(separator: ", ")))"
        case .outsideValidity(let key, let createdAt, let window):
            return "manifest created at \(createdAt) is outside the validity of key '\(key)' (\(window))"
        case .createdInFuture(let createdAt):
            return "manifest claims to be created at \(createdAt), in the future: check the publisher's clock"
        case .cannotRead(let path, let reason):
            return "cannot read trust file \(path): \(reason)"
        case .cannotWrite(let path, let reason):
            return "cannot write trust file \(path): \(reason)"
        case .malformed(let path, let reason):
            return "trust file \(path) is malformed: \(reason)"
        case .duplicateKey(let name):
            return "the trust file already has a key named '\(name)' or the same public key; pick another name"
        case .unsafeFile(let error):
            return error.description
        }
    }
}
