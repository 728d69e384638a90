import KindlingCrypto
import Testing

@Suite("Crypto")
struct CryptoTests {
    @Test("BLAKE2b-256 matches the published values")
    func blake2bKnownAnswers() throws {
        #expect(Blake2b.hash([UInt8]()).hex == "0e5751c026e543b2e8ab2eb06099daa1d1e5df47778f7787faab45cdf12fe3a8")
        #expect(
            Blake2b.hash(Array("abc".utf8)).hex == "bddd813c634239723171ef3fee98579b94964e3bb1cb3e427262c8c068d52319")
    }

    @Test("Incremental hashing equals one-shot hashing, whatever the split")
    func incrementalHashing() {
        let data = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        for split in [0, 1, 63, 64, 65, 4096, 99_999, 100_000] {
            let hasher = Blake2bHasher()
            hasher.update(Array(data[..<split]))
            hasher.update(Array(data[split...]))
            #expect(hasher.finalize() == Blake2b.hash(data))
        }
    }

    @Test("Ed25519 matches RFC 8032 test 1 and rejects tampering")
    func ed25519RFC8032() throws {
        let seed = try Hex.decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
        let key = try SigningKey(seed: seed)
        #expect(Hex.encode(key.publicKey.bytes) == "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
        let signature = key.sign([])
        #expect(
            Hex.encode(signature.bytes)
                == "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555f"
                + "b8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
        )
        #expect(key.publicKey.isValidSignature(signature, for: []))
        #expect(!key.publicKey.isValidSignature(signature, for: [0]))
        var flipped = signature.bytes
        flipped[10] ^= 1
        #expect(!key.publicKey.isValidSignature(try Signature(bytes: flipped), for: []))
        #expect(key.seed == seed)
    }

    @Test("Public key text form round-trips and rejects junk")
    func publicKeyText() throws {
        let key = SigningKey.generate().publicKey
        #expect(try PublicKey(text: "  " + key.text + "\n") == key)
        for bad in ["", "ed25519:", "ed25519:zz", "ssh-ed25519 AAAA", String(key.text.dropLast())] {
            #expect(throws: CryptoError.self) { try PublicKey(text: bad) }
        }
    }

    @Test("Digest hex round-trips and orders like its bytes")
    func digestOrdering() throws {
        let a = try #require(Digest(hex: String(repeating: "00", count: 31) + "01"))
        let b = try #require(Digest(hex: "01" + String(repeating: "00", count: 31)))
        #expect(a < b)
        #expect(Digest(hex: a.hex) == a)
        #expect(Digest(hex: "abc") == nil)
        #expect(Digest(bytes: [UInt8](repeating: 0, count: 31)) == nil)
    }

    @Test("A digest reads the same from an array, a slice and a non-contiguous collection, and gives its bytes back")
    func digestFromAnyBytes() throws {
        let bytes = (0..<32).map { UInt8($0 * 7 + 1) }
        let fromArray = try #require(Digest(bytes: bytes))
        #expect(fromArray.bytes == bytes)
        #expect(fromArray.hex == Hex.encode(bytes))
        #expect(Digest(bytes: ([0xFF] + bytes + [0xFF])[1...32]) == fromArray)
        #expect(Digest(bytes: bytes.reversed().reversed()) == fromArray)
        #expect(Digest(bytes: bytes.lazy.map { $0 }) == fromArray)
        #expect(Digest(bytes: bytes + [0]) == nil)
        #expect(Digest(bytes: ([0] + bytes)[1...31]) == nil)
        let other = try #require(Digest(bytes: bytes.map { $0 ^ 0x80 }))
        #expect(other != fromArray && (fromArray < other) == (bytes.lexicographicallyPrecedes(other.bytes)))
    }

    @Test("Key exchange plus a shared secret gives matching stream keys; a wrong secret does not")
    func keyExchangeAndSecretStream() throws {
        let client = EphemeralKeyExchange()
        let server = EphemeralKeyExchange()
        let context = Array("test".utf8)
        let secret = Array("mesh secret".utf8)
        let clientKeys = try client.clientSessionKeys(serverPublicKey: server.publicKey).bound(
            toSecret: secret, context: context)
        let serverKeys = try server.serverSessionKeys(clientPublicKey: client.publicKey).bound(
            toSecret: secret, context: context)
        #expect(clientKeys.transmit == serverKeys.receive)
        #expect(clientKeys.receive == serverKeys.transmit)

        let sender = try SecretStreamSender(key: clientKeys.transmit)
        let receiver = try SecretStreamReceiver(key: serverKeys.receive, header: sender.header)
        let first = sender.seal(Array("hello".utf8))
        let second = sender.seal(Array("world".utf8))
        #expect(try receiver.open(first) == Array("hello".utf8))
        #expect(try receiver.open(second) == Array("world".utf8))
        // Replaying a message fails: the stream state has moved on.
        #expect(throws: CryptoError.decryptionFailed) { try receiver.open(first) }

        let wrongKeys = try server.serverSessionKeys(clientPublicKey: client.publicKey)
            .bound(toSecret: Array("other secret".utf8), context: context)
        let eavesdropper = try SecretStreamReceiver(key: wrongKeys.receive, header: sender.header)
        #expect(throws: CryptoError.decryptionFailed) { try eavesdropper.open(sender.seal([1, 2, 3])) }
    }
}
