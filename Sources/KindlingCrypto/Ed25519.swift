import CSodium

/// An Ed25519 public key. Its text form is `ed25519:` followed by 64 lower-case hex digits.
public struct PublicKey: Hashable, Sendable, CustomStringConvertible {
    public static let byteCount = 32
    public static let textPrefix = "ed25519:"

    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidKeyLength(expected: Self.byteCount, actual: bytes.count)
        }
        self.bytes = bytes
    }

    /// Parses `ed25519:<hex>`; surrounding whitespace is ignored.
    public init(text: String) throws(CryptoError) {
        let trimmed = text.trimmingASCIIWhitespace()
        guard trimmed.hasPrefix(Self.textPrefix) else { throw .invalidKeyText(trimmed) }
        let hex = trimmed.dropFirst(Self.textPrefix.count)
        guard hex.utf8.count == Self.byteCount * 2, let bytes = try? Hex.decode(hex) else {
            throw .invalidKeyText(trimmed)
        }
        try self.init(bytes: bytes)
    }

    public var text: String { Self.textPrefix + Hex.encode(bytes) }
    public var description: String { text }

    /// All 32 bytes in one call: the synthesised hash fed the array to the hasher a byte at a time (keys are looked
    /// up on every message a node handles; a tenth of a large simulation's time).
    public func hash(into hasher: inout Hasher) {
        bytes.withUnsafeBytes { hasher.combine(bytes: $0) }
    }

    /// True when `signature` is a valid Ed25519 signature of `message` under this key.
    public func isValidSignature(_ signature: Signature, for message: [UInt8]) -> Bool {
        ensureSodium()
        return withBytePointer(signature.bytes) { sig, _ in
            withBytePointer(message) { msg, count in
                withBytePointer(bytes) { key, _ in
                    crypto_sign_verify_detached(sig, msg, UInt64(count), key) == 0
                }
            }
        }
    }
}

/// A detached Ed25519 signature (64 bytes).
public struct Signature: Hashable, Sendable {
    public static let byteCount = 64
    public let bytes: [UInt8]

    public init(bytes: [UInt8]) throws(CryptoError) {
        guard bytes.count == Self.byteCount else {
            throw .invalidKeyLength(expected: Self.byteCount, actual: bytes.count)
        }
        self.bytes = bytes
    }
}

/// An Ed25519 signing key, derived from a 32-byte seed. The secret bytes are wiped when the key is released.
public final class SigningKey: Sendable {
    public static let seedByteCount = 32

    public let publicKey: PublicKey
    private let secret: SecretBytes

    public init(seed: [UInt8]) throws(CryptoError) {
        ensureSodium()
        guard seed.count == Self.seedByteCount else {
            throw .invalidKeyLength(expected: Self.seedByteCount, actual: seed.count)
        }
        let secret = SecretBytes(count: Int(crypto_sign_SECRETKEYBYTES))
        var publicBytes = [UInt8](repeating: 0, count: PublicKey.byteCount)
        _ = withBytePointer(seed) { seedPointer, _ in
            withMutableBytePointer(&publicBytes) { pk, _ in
                crypto_sign_seed_keypair(pk, secret.pointer, seedPointer)
            }
        }
        self.secret = secret
        // 32 bytes by construction.
        self.publicKey = (try? PublicKey(bytes: publicBytes)) ?? { preconditionFailure("Ed25519 public key") }()
    }

    /// A new key from 32 secure random bytes.
    public static func generate() -> SigningKey {
        var seed = secureRandomBytes(count: seedByteCount)
        defer { wipe(&seed) }
        return (try? SigningKey(seed: seed)) ?? { preconditionFailure("seed has 32 bytes") }()
    }

    /// The 32-byte seed this key was made from (the first half of libsodium's secret key).
    public var seed: [UInt8] { Array(UnsafeBufferPointer(start: secret.pointer, count: Self.seedByteCount)) }

    public func sign(_ message: [UInt8]) -> Signature {
        var out = [UInt8](repeating: 0, count: Signature.byteCount)
        _ = withMutableBytePointer(&out) { sig, _ in
            withBytePointer(message) { msg, count in
                crypto_sign_detached(sig, nil, msg, UInt64(count), secret.pointer)
            }
        }
        return (try? Signature(bytes: out)) ?? { preconditionFailure("Ed25519 signature has 64 bytes") }()
    }
}

/// Overwrites secret bytes before their memory is released.
public func wipe(_ bytes: inout [UInt8]) {
    withMutableBytePointer(&bytes) { wipeMemory($0, $1) }
}

func wipeMemory(_ pointer: UnsafeMutablePointer<UInt8>, _ count: Int) {
    ensureSodium()
    sodium_memzero(pointer, count)
}

extension String {
    func trimmingASCIIWhitespace() -> String {
        let scalars = unicodeScalars
        guard let first = scalars.firstIndex(where: { !$0.properties.isWhitespace }),
            let last = scalars.lastIndex(where: { !$0.properties.isWhitespace })
        else { return "" }
        return String(scalars[first...last])
    }
}
