import CSodium

/// BLAKE2b (libsodium's `crypto_generichash`), the one hash function of Kindling.
public enum Blake2b {
    /// BLAKE2b-256 of `bytes`.
    public static func hash(_ bytes: UnsafeRawBufferPointer) -> Digest {
        ensureSodium()
        var out = [UInt8](repeating: 0, count: Digest.byteCount)
        _ = withMutableBytePointer(&out) { outPointer, outCount in
            withBytePointer(bytes) { input, count in
                crypto_generichash(outPointer, outCount, input, UInt64(count), nil, 0)
            }
        }
        // The output buffer always has 32 bytes.
        return Digest(bytes: out) ?? { preconditionFailure("BLAKE2b-256 output has 32 bytes") }()
    }

    public static func hash(_ bytes: [UInt8]) -> Digest {
        bytes.withUnsafeBytes { hash($0) }
    }

    /// Keyed BLAKE2b with an output of `outputLength` bytes (16...64), used to derive keys.
    public static func keyedHash(_ message: [UInt8], key: [UInt8], outputLength: Int = 32) -> [UInt8] {
        ensureSodium()
        precondition((16...64).contains(outputLength) && key.count <= 64)
        var out = [UInt8](repeating: 0, count: outputLength)
        _ = withMutableBytePointer(&out) { outPointer, outCount in
            withBytePointer(message) { messagePointer, messageCount in
                key.withUnsafeBufferPointer { keyBuffer in
                    crypto_generichash(
                        outPointer, outCount, messagePointer, UInt64(messageCount), keyBuffer.baseAddress,
                        keyBuffer.count)
                }
            }
        }
        return out
    }
}

/// Incremental BLAKE2b-256, for content that arrives in pieces.
///
/// Not Sendable: one owner feeds it. The state lives in 64-byte aligned memory, as libsodium asks.
public final class Blake2bHasher {
    private let state: UnsafeMutableRawPointer
    private var finished = false

    public init() {
        ensureSodium()
        state = UnsafeMutableRawPointer.allocate(byteCount: crypto_generichash_statebytes(), alignment: 64)
        _ = crypto_generichash_init(OpaquePointer(state), nil, 0, 32)
    }

    deinit {
        state.deallocate()
    }

    public func update(_ bytes: UnsafeRawBufferPointer) {
        precondition(!finished, "Blake2bHasher used after finalize()")
        _ = withBytePointer(bytes) { input, count in
            crypto_generichash_update(OpaquePointer(state), input, UInt64(count))
        }
    }

    public func update(_ bytes: [UInt8]) {
        bytes.withUnsafeBytes { update($0) }
    }

    public func finalize() -> Digest {
        precondition(!finished, "Blake2bHasher finalized twice")
        finished = true
        var out = [UInt8](repeating: 0, count: 32)
        _ = withMutableBytePointer(&out) { crypto_generichash_final(OpaquePointer(state), $0, $1) }
        return Digest(bytes: out) ?? { preconditionFailure("BLAKE2b-256 output has 32 bytes") }()
    }
}

@available(*, unavailable)
extension Blake2bHasher: Sendable {}
