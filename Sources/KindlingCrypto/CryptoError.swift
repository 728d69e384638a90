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
        // Never echo the text itself: it may be a secret key pasted in the wrong place.
        case .invalidHex(let text):
            return "not a hexadecimal string (\(text.utf8.count) characters)"
        case .invalidKeyText(let text):
            if text.contains("secret") {
                return "that is a secret key, not a public key: keep it private and pass the 'ed25519:...' line "
                    + "that keygen printed"
            }
            return "not a kindling public key (\(text.utf8.count) characters; expected 'ed25519:' followed by 64 hex "
                + "digits, as keygen prints)"
        case .keyExchangeFailed:
            return "key exchange failed: the peer sent an invalid public key"
        case .decryptionFailed:
            return "message failed authentication: wrong mesh secret or corrupted stream"
        case .streamFinished:
            return "encrypted stream already finished"
        }
    }
}
