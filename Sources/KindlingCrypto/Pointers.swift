/// libsodium declares its pointers non-null, but an empty Swift array has no base address. These helpers hand C a
/// valid pointer in every case (to a dummy byte when the length is 0, which C then never reads).
@inline(__always)
func withBytePointer<R>(_ bytes: [UInt8], _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
    bytes.withUnsafeBufferPointer { buffer in
        if let base = buffer.baseAddress { return body(base, buffer.count) }
        let dummy: UInt8 = 0
        return withUnsafePointer(to: dummy) { body($0, 0) }
    }
}

@inline(__always)
func withBytePointer<R>(_ bytes: UnsafeRawBufferPointer, _ body: (UnsafePointer<UInt8>, Int) -> R) -> R {
    if let base = bytes.baseAddress { return body(base.assumingMemoryBound(to: UInt8.self), bytes.count) }
    let dummy: UInt8 = 0
    return withUnsafePointer(to: dummy) { body($0, 0) }
}

@inline(__always)
func withMutableBytePointer<R>(_ bytes: inout [UInt8], _ body: (UnsafeMutablePointer<UInt8>, Int) -> R) -> R {
    let count = bytes.count
    if count == 0 {
        var dummy: UInt8 = 0
        return withUnsafeMutablePointer(to: &dummy) { body($0, 0) }
    }
    return bytes.withUnsafeMutableBufferPointer { buffer in
        // Non-empty arrays always have storage.
        body(buffer.baseAddress.unsafelyUnwrapped, count)
    }
}

/// A fixed-size secret buffer that is wiped and freed with its owner.
final class SecretBytes: @unchecked Sendable {
    // @unchecked: written only in init, read-only afterwards, wiped in deinit when no other reference exists.
    let pointer: UnsafeMutablePointer<UInt8>
    let count: Int

    init(count: Int) {
        pointer = .allocate(capacity: count)
        pointer.initialize(repeating: 0, count: count)
        self.count = count
    }

    deinit {
        wipeMemory(pointer, count)
        pointer.deallocate()
    }
}

extension Array where Element == UInt8 {
    /// `withUnsafeBytes` that keeps the body's typed error (the standard one only rethrows `any Error`).
    public func withBytes<R, E: Error>(_ body: (UnsafeRawBufferPointer) throws(E) -> R) throws(E) -> R {
        let result = withUnsafeBytes { buffer in Result { () throws(E) -> R in try body(buffer) } }
        return try result.get()
    }

    /// `withUnsafeMutableBytes` that keeps the body's typed error.
    public mutating func withMutableBytes<R, E: Error>(
        _ body: (UnsafeMutableRawBufferPointer) throws(E) -> R
    ) throws(E) -> R {
        let result = withUnsafeMutableBytes { buffer in Result { () throws(E) -> R in try body(buffer) } }
        return try result.get()
    }
}
