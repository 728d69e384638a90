import Foundation
public import KindlingCrypto
public import KindlingManifest

/// Which mesh a node belongs to. Open meshes are named; private meshes are defined by a shared secret, which also
/// keys the encryption of every connection (Specs/wire.md, "Meshes").
public struct MeshIdentity: Sendable {
    public let id: Digest
    /// The shared secret of a private mesh; nil for an open mesh.
    public let secret: [UInt8]?

    public var isPrivate: Bool { secret != nil }

    /// An open mesh: anyone may join and read; the trust gate still decides what is used.
    public static func open(name: String = "kindling") -> MeshIdentity {
        MeshIdentity(id: Blake2b.hash(Array("kindling-open-mesh-v1:\(name)".utf8)), secret: nil)
    }

    /// A private mesh: only nodes holding `secret` can connect, and all traffic is encrypted.
    public static func `private`(secret: [UInt8]) -> MeshIdentity {
        MeshIdentity(
            id: Digest(bytes: Blake2b.keyedHash(Array("kindling-mesh-id-v1".utf8), key: secret)) ?? .zero,
            secret: secret)
    }

    /// Reads a mesh secret file: one line of at least 64 hex digits (32 bytes or more).
    public static func load(secretFile path: String) throws(MeshSecretError) -> MeshIdentity {
        // Whoever can write the secret decides which mesh this node joins and can read its traffic.
        do throws(GuardedFileError) { try GuardedFile.check(path, what: "mesh secret file") } catch {
            throw .unsafe(error)
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw .unreadable(path: path) }
        let text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        guard text.count >= 64, text.count <= 128, let secret = try? Hex.decode(text) else {
            throw .malformed(path: path)
        }
        return .private(secret: secret)
    }

    /// Writes a new random 32-byte secret (mode 0600); never overwrites.
    public static func createSecretFile(path: String) throws(MeshSecretError) {
        let fd = Foundation.open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
        guard fd >= 0 else { throw errno == EEXIST ? .exists(path: path) : .unreadable(path: path) }
        defer { close(fd) }
        var text = Array((Hex.encode(secureRandomBytes(count: 32)) + "\n").utf8)
        defer { wipe(&text) }
        guard text.withUnsafeBytes({ write(fd, $0.baseAddress, $0.count) }) == text.count else {
            throw .unreadable(path: path)
        }
    }
}

public enum MeshSecretError: Error, Sendable, CustomStringConvertible {
    case unreadable(path: String)
    case malformed(path: String)
    case exists(path: String)
    case unsafe(GuardedFileError)

    public var description: String {
        switch self {
        case .unreadable(let path): return "cannot read or write mesh secret file \(path)"
        case .malformed(let path):
            return
                "\(path) is not a mesh secret (one line of 64 to 128 hex digits; make one with 'kindling mesh-secret')"
        case .exists(let path): return "\(path) already exists; refusing to overwrite a mesh secret"
        case .unsafe(let error): return error.description
        }
    }
}

extension Digest {
    static let zero = Digest(bytes: [UInt8](repeating: 0, count: 32)) ?? { preconditionFailure() }()
}
