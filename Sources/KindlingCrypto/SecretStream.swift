import CSodium

/// The sending half of an encrypted, authenticated, ordered message stream
/// (libsodium `crypto_secretstream_xchacha20poly1305`). Reordered, dropped, replayed or altered messages fail.
public final class SecretStreamSender {
    public static let headerByteCount = Int(crypto_secretstream_xchacha20poly1305_HEADERBYTES)
    public static let overhead = Int(crypto_secretstream_xchacha20poly1305_ABYTES)

    private var state: crypto_secretstream_xchacha20poly1305_state
    /// Send this to the receiver first.
    public let header: [UInt8]

    public init(key: [UInt8]) throws(CryptoError) {
        ensureSodium()
        guard key.count == Int(crypto_secretstream_xchacha20poly1305_KEYBYTES) else {
            throw .invalidKeyLength(expected: Int(crypto_secretstream_xchacha20poly1305_KEYBYTES), actual: key.count)
        }
        var header = [UInt8](repeating: 0, count: Self.headerByteCount)
        var state = crypto_secretstream_xchacha20poly1305_state()
        _ = withMutableBytePointer(&header) { h, _ in
            withBytePointer(key) { k, _ in crypto_secretstream_xchacha20poly1305_init_push(&state, h, k) }
        }
        self.state = state
        self.header = header
    }

    public func seal(_ message: UnsafeRawBufferPointer) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: message.count + Self.overhead)
        _ = withMutableBytePointer(&out) { o, _ in
            withBytePointer(message) { m, count in
                crypto_secretstream_xchacha20poly1305_push(&state, o, nil, m, UInt64(count), nil, 0, 0)
            }
        }
        return out
    }

    public func seal(_ message: [UInt8]) -> [UInt8] {
        message.withUnsafeBytes { seal($0) }
    }
}

/// The receiving half of a secret stream.
public final class SecretStreamReceiver {
    private var state = crypto_secretstream_xchacha20poly1305_state()

    public init(key: [UInt8], header: [UInt8]) throws(CryptoError) {
        ensureSodium()
        guard key.count == Int(crypto_secretstream_xchacha20poly1305_KEYBYTES),
            header.count == SecretStreamSender.headerByteCount
        else { throw .decryptionFailed }
        let status = withBytePointer(header) { h, _ in
            withBytePointer(key) { k, _ in crypto_secretstream_xchacha20poly1305_init_pull(&state, h, k) }
        }
        guard status == 0 else { throw .decryptionFailed }
    }

    /// Decrypts and authenticates one message; throws when it was not sealed by the matching sender, in order.
    public func open(_ ciphertext: UnsafeRawBufferPointer) throws(CryptoError) -> [UInt8] {
        guard ciphertext.count >= SecretStreamSender.overhead else { throw .decryptionFailed }
        var out = [UInt8](repeating: 0, count: ciphertext.count - SecretStreamSender.overhead)
        var tag: UInt8 = 0
        let status = withMutableBytePointer(&out) { o, _ in
            withBytePointer(ciphertext) { c, count in
                crypto_secretstream_xchacha20poly1305_pull(&state, o, nil, &tag, c, UInt64(count), nil, 0)
            }
        }
        guard status == 0 else { throw .decryptionFailed }
        return out
    }

    public func open(_ ciphertext: [UInt8]) throws(CryptoError) -> [UInt8] {
        let result = ciphertext.withUnsafeBytes { buffer in
            Result { () throws(CryptoError) -> [UInt8] in try open(buffer) }
        }
        return try result.get()
    }
}

@available(*, unavailable)
extension SecretStreamSender: Sendable {}

@available(*, unavailable)
extension SecretStreamReceiver: Sendable {}
