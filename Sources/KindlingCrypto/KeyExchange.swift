import CSodium

/// An ephemeral X25519 key pair for one connection (libsodium `crypto_kx`).
public final class EphemeralKeyExchange: Sendable {
    public static let publicKeyByteCount = 32

    public let publicKey: [UInt8]
    private let secretKey: SecretBytes

    public init() {
        ensureSodium()
        let secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES))
        var publicBytes = [UInt8](repeating: 0, count: Self.publicKeyByteCount)
        _ = withMutableBytePointer(&publicBytes) { pk, _ in crypto_kx_keypair(pk, secret.pointer) }
        self.publicKey = publicBytes
        self.secretKey = secret
    }

    /// A key pair from a 32-byte seed (`crypto_kx_seed_keypair`): for test vectors only; connections use `init()`.
    public init(seed: [UInt8]) {
        ensureSodium()
        precondition(seed.count == Int(crypto_kx_SEEDBYTES), "a key-exchange seed has 32 bytes")
        let secret = SecretBytes(count: Int(crypto_kx_SECRETKEYBYTES))
        var publicBytes = [UInt8](repeating: 0, count: Self.publicKeyByteCount)
        _ = withMutableBytePointer(&publicBytes) { pk, _ in
            withBytePointer(seed) { seedPointer, _ in crypto_kx_seed_keypair(pk, secret.pointer, seedPointer) }
        }
        self.publicKey = publicBytes
        self.secretKey = secret
    }

    /// Session keys for the side that opened the connection.
    public func clientSessionKeys(serverPublicKey: [UInt8]) throws(CryptoError) -> SessionKeys {
        try sessionKeys(peer: serverPublicKey, client: true)
    }

    /// Session keys for the side that accepted the connection.
    public func serverSessionKeys(clientPublicKey: [UInt8]) throws(CryptoError) -> SessionKeys {
        try sessionKeys(peer: clientPublicKey, client: false)
    }

    private func sessionKeys(peer: [UInt8], client: Bool) throws(CryptoError) -> SessionKeys {
        guard peer.count == Self.publicKeyByteCount else { throw .keyExchangeFailed }
        var receive = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        var transmit = [UInt8](repeating: 0, count: Int(crypto_kx_SESSIONKEYBYTES))
        let status = withMutableBytePointer(&receive) { rx, _ in
            withMutableBytePointer(&transmit) { tx, _ in
                withBytePointer(peer) { peerKey, _ in
                    withBytePointer(publicKey) { ownKey, _ in
                        client
                            ? crypto_kx_client_session_keys(rx, tx, ownKey, secretKey.pointer, peerKey)
                            : crypto_kx_server_session_keys(rx, tx, ownKey, secretKey.pointer, peerKey)
                    }
                }
            }
        }
        guard status == 0 else { throw .keyExchangeFailed }
        return SessionKeys(receive: receive, transmit: transmit)
    }
}

/// The two directional keys that come out of a key exchange.
public struct SessionKeys: Sendable {
    public var receive: [UInt8]
    public var transmit: [UInt8]

    /// Binds both keys to a pre-shared secret: without the secret, a peer derives different keys and every
    /// message fails authentication.
    public func bound(toSecret secret: [UInt8], context: [UInt8]) -> SessionKeys {
        SessionKeys(
            receive: Blake2b.keyedHash(context + receive, key: Blake2b.keyedHash(secret, key: [], outputLength: 32)),
            transmit: Blake2b.keyedHash(context + transmit, key: Blake2b.keyedHash(secret, key: [], outputLength: 32))
        )
    }
}
