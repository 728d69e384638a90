import Foundation
public import KindlingCrypto
import KindlingSystem

/// The publisher's secret key on disk (Specs/trust.md, "Secret key file"): one line,
/// `kindling-ed25519-secret:` and the 32-byte seed in hex, in a file that only its owner may read (0600).
public enum SecretKeyFile {
    public static let prefix = "kindling-ed25519-secret:"

    /// Creates the file with mode 0600; never overwrites an existing file.
    public static func create(path: String, key: SigningKey) throws(KeyFileError) {
        let file: PosixFile
        do throws(FileError) {
            file = try PosixFile(opening: path, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o600)
        } catch {
            if error.errno == .fileExists { throw .alreadyExists(path: path) }
            throw .cannotWrite(path: path, reason: error.errno.description)
        }
        var text = Array((prefix + Hex.encode(key.seed) + "\n").utf8)
        defer { wipe(&text) }
        do throws(FileError) {
            try file.write(text)
            try file.sync()
        } catch {
            try? FileSystem.removeFile(path)
            throw .cannotWrite(path: path, reason: error.errno.description)
        }
    }

    /// Reads the key, refusing a file that others can read or write (like ssh does).
    public static func load(path: String) throws(KeyFileError) -> SigningKey {
        let found: stat?
        do throws(FileError) {
            found = try FileSystem.status(path, followingLinks: true)
        } catch {
            throw .cannotRead(path: path, reason: error.errno.description)
        }
        guard let info = found else { throw .missing(path: path) }
        guard info.st_mode & S_IFMT == S_IFREG else { throw .cannotRead(path: path, reason: "not a regular file") }
        let mode = info.st_mode & 0o777
        guard mode & 0o077 == 0 else { throw .tooOpen(path: path, mode: UInt32(mode)) }
        do throws(GuardedFileError) { try GuardedFile.check(path, what: "secret key file") } catch {
            throw .unsafe(error)
        }
        guard info.st_size < 4096, let data = FileManager.default.contents(atPath: path) else {
            throw .cannotRead(path: path, reason: "unreadable or too large for a key file")
        }
        var text = String(decoding: data, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        defer { text = "" }
        guard text.hasPrefix(prefix), let seed = try? Hex.decode(text.dropFirst(prefix.count)), seed.count == 32,
            let key = try? SigningKey(seed: seed)
        else { throw .malformed(path: path) }
        return key
    }
}

public enum KeyFileError: Error, Equatable, Sendable, CustomStringConvertible {
    case alreadyExists(path: String)
    case missing(path: String)
    case tooOpen(path: String, mode: UInt32)
    case malformed(path: String)
    case cannotRead(path: String, reason: String)
    case cannotWrite(path: String, reason: String)
    case unsafe(GuardedFileError)

    public var description: String {
        switch self {
        case .alreadyExists(let path):
            return "\(path) already exists; refusing to overwrite a key (move it away or choose another path)"
        case .missing(let path):
            return "secret key file \(path) does not exist; create one with 'kindling keygen --secret-key \(path)'"
        case .tooOpen(let path, let mode):
            return
                "secret key file \(path) has mode \(String(mode, radix: 8)), readable by others; run 'chmod 600 "
                    + "\(path)'"
        case .malformed(let path):
            return "\(path) is not a kindling secret key file (expected one line 'kindling-ed25519-secret:<64 hex>')"
        case .cannotRead(let path, let reason):
            return "cannot read secret key file \(path): \(reason)"
        case .cannotWrite(let path, let reason):
            return "cannot write secret key file \(path): \(reason)"
        case .unsafe(let error):
            return error.description
        }
    }
}
