/// What can go wrong in the cryptographic layer. Each case says what to do next.
public enum CryptoError: Error, Equatable, Sendable, CustomStringConvertible {
    case invalidKeyLength(expected: Int, actual: Int)
    case invalidHex(String)
    case invalidKeyText(String)
    case keyExchangeFailed
    case decryptionFailed
    case streamFinished

    public var description: String {
        switch self {
        case .invalidKeyLength(let expected, let actual):
            return "key has \(actual) bytes, expected \(expected)"
        case .invalidHex(let text):
            return "not a hexadecimal string: '\(text.prefix(40))'"
        case .invalidKeyText(let text):
            return "not a kindling key: '\(text.prefix(40))' (expected 'ed25519:' followed by 64 hex digits)"
        case .keyExchangeFailed:
            return "key exchange failed: the peer sent an invalid public key"
        case .decryptionFailed:
            return "message failed authentication: wrong mesh secret or corrupted stream"
        case .streamFinished:
            return "encrypted stream already finished"
        }
    }
}
