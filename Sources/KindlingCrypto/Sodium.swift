import CSodium

/// libsodium must be initialised once before any other call; a global `let` is initialised lazily and exactly once.
private let sodiumInitResult: Int32 = sodium_init()

/// Call before every libsodium use. `sodium_init` returns 1 when already initialised, -1 only on a broken platform.
@inline(__always)
func ensureSodium() {
    precondition(sodiumInitResult >= 0, "libsodium failed to initialise")
}

/// Cryptographically secure random bytes.
public func secureRandomBytes(count: Int) -> [UInt8] {
    ensureSodium()
    var bytes = [UInt8](repeating: 0, count: count)
    withMutableBytePointer(&bytes) { randombytes_buf($0, $1) }
    return bytes
}

/// Compares two byte strings in constant time (for secrets and authenticators).
public func constantTimeEquals(_ lhs: [UInt8], _ rhs: [UInt8]) -> Bool {
    ensureSodium()
    guard lhs.count == rhs.count else { return false }
    guard !lhs.isEmpty else { return true }
    return withBytePointer(lhs) { l, count in withBytePointer(rhs) { r, _ in sodium_memcmp(l, r, count) == 0 } }
}
