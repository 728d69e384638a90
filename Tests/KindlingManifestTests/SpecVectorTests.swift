import Foundation
import KindlingCrypto
import KindlingManifest
import Testing

/// Checks Specs/vectors/manifest-v1.json: the bytes an independent implementation must produce.
@Suite("Spec test vectors")
struct SpecVectorTests {
    struct Vector: Decodable {
        struct Entry: Decodable {
            var path: String
            var kind: String
            var mode: String
            var mtime: UInt64
            var content: String?
            var target: String?
        }
        struct Fields: Decodable {
            var repository: String
            var commit: String
            var createdAt: UInt64
            var cacheKey: [String: String]
            var entries: [Entry]
            var extra: [String: String]
        }
        var seed: String
        var publicKey: String
        var manifest: Fields
        var headerHex: String
        var bodyHex: String
        var manifestId: String
        var signature: String
        var manifestFileHex: String
    }

    static let vectorsDirectory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("Specs/vectors")

    @Test("manifest-v1.json: header, body, id, signature and file bytes match")
    func manifestVector() throws {
        let data = try Data(contentsOf: Self.vectorsDirectory.appendingPathComponent("manifest-v1.json"))
        let vector = try JSONDecoder().decode(Vector.self, from: data)
        let key = try SigningKey(seed: try Hex.decode(vector.seed))
        #expect(key.publicKey.text == vector.publicKey)

        let entries: [ManifestEntry] = try vector.manifest.entries.map { entry in
            let mode = UInt32(entry.mode, radix: 8) ?? 0
            switch entry.kind {
            case "file":
                let content = Array((entry.content ?? "").utf8)
                let chunks = content.isEmpty ? [] : [ChunkReference(id: Blake2b.hash(content), length: content.count)]
                return .file(path: entry.path, mode: mode, modificationTime: entry.mtime, chunks: chunks)
            case "directory":
                return .directory(path: entry.path, mode: mode, modificationTime: entry.mtime)
            case "symlink":
                return .symlink(path: entry.path, target: entry.target ?? "", modificationTime: entry.mtime)
            default:
                throw FormatError.invalid(field: "kind", reason: entry.kind)
            }
        }
        let manifest = try Manifest.sign(
            repository: vector.manifest.repository, commit: vector.manifest.commit,
            createdAt: vector.manifest.createdAt, cacheKey: vector.manifest.cacheKey,
            body: ManifestBody(entries: entries, extra: vector.manifest.extra.mapValues { Array($0.utf8) }), with: key)

        #expect(Hex.encode(manifest.signed.headerBytes) == vector.headerHex)
        #expect(Hex.encode(manifest.bodyBytes) == vector.bodyHex)
        #expect(manifest.id.hex == vector.manifestId)
        #expect(Hex.encode(manifest.signed.signature.bytes) == vector.signature)
        #expect(Hex.encode(ManifestFile.encode(manifest)) == vector.manifestFileHex)

        // And the other direction: the published bytes decode to the same manifest.
        let decoded = try ManifestFile.decode(try Hex.decode(vector.manifestFileHex))
        #expect(decoded == manifest)
        #expect(decoded.signed.hasValidSignature)
    }
}
