public import Foundation
public import KindlingCrypto
public import KindlingManifest
import KindlingStore
import KindlingSystem

/// Deterministic test data and keys.
public enum Fixtures {
    /// A signing key from a seed of 32 copies of `byte`: the same key in every run.
    public static func key(_ byte: UInt8) -> SigningKey {
        (try? SigningKey(seed: [UInt8](repeating: byte, count: 32))) ?? { fatalError("32-byte seed") }()
    }

    /// Pseudo-random bytes from a seed (SplitMix64), for reproducible "incompressible" content.
    public static func bytes(count: Int, seed: UInt64) -> [UInt8] {
        var state = seed
        var out = [UInt8]()
        out.reserveCapacity(count + 8)
        while out.count < count {
            state &+= 0x9E37_79B9_7F4A_7C15
            var z = state
            z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
            z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
            z ^= z >> 31
            withUnsafeBytes(of: z.littleEndian) { out.append(contentsOf: $0) }
        }
        out.removeLast(out.count - count)
        return out
    }

    /// A trust file with the given keys, each allowed every repository.
    public static func trust(_ keys: [(String, SigningKey)], repositories: [String] = ["**"]) -> TrustFile {
        TrustFile(
            keys: keys.map {
                TrustedKey(name: $0.0, publicKey: $0.1.publicKey, repositories: repositories.map(RepositoryGlob.init))
            })
    }

    /// Writes `bytes` to `path`, creating parents, with an optional mode and mtime (nanoseconds).
    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o644, mtime: UInt64? = nil) throws {
        let parent = (path as NSString).deletingLastPathComponent
        try FileSystem.createDirectories(parent)
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        chmod(path, mode)
        if let mtime {
            var times = [
                timespec(tv_sec: Int(mtime / 1_000_000_000), tv_nsec: Int(mtime % 1_000_000_000)),
                timespec(tv_sec: Int(mtime / 1_000_000_000), tv_nsec: Int(mtime % 1_000_000_000)),
            ]
            utimensat(AT_FDCWD, path, &times, 0)
        }
    }

    public static func write(_ text: String, to path: String, mode: mode_t = 0o644) throws {
        try write(Array(text.utf8), to: path, mode: mode)
    }

    public static func read(_ path: String) -> [UInt8]? {
        FileManager.default.contents(atPath: path).map(Array.init)
    }

    /// mtime in nanoseconds, mode bits and kind of a path (without following symlinks).
    public static func status(_ path: String) -> (mtime: UInt64, mode: UInt32, isLink: Bool)? {
        var info = stat()
        guard lstat(path, &info) == 0 else { return nil }
        return (
            UInt64(info.st_mtim.tv_sec) * 1_000_000_000 + UInt64(info.st_mtim.tv_nsec), UInt32(info.st_mode) & 0o7777,
            info.st_mode & S_IFMT == S_IFLNK
        )
    }
}
