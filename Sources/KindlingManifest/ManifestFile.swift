import KindlingCrypto

/// The single-file form of a signed manifest, for export, import and `restore --manifest`
/// (Specs/manifest.md, "Manifest file"): magic "KNDF", version, header bytes, signature, body bytes.
public enum ManifestFile {
    public static let magic: [UInt8] = Array("KNDF".utf8)
    public static let formatVersion: UInt64 = 1

    public static func encode(_ manifest: Manifest) -> [UInt8] {
        var writer = CanonicalWriter(
            reservingCapacity: manifest.bodyBytes.count + manifest.signed.headerBytes.count + 96)
        writer.writeRaw(magic)
        writer.writeVarint(formatVersion)
        writer.writeBytes(manifest.signed.headerBytes)
        writer.writeRaw(manifest.signed.signature.bytes)
        writer.writeBytes(manifest.bodyBytes)
        return writer.bytes
    }

    /// Decodes and checks that the body belongs to the header. The signature is checked by `TrustPolicy`.
    public static func decode(_ bytes: [UInt8]) throws(FormatError) -> Manifest {
        var reader = CanonicalReader(bytes)
        guard bytes.count >= 4, try reader.readRaw(count: 4, "magic").elementsEqual(magic) else {
            throw .badMagic(what: "manifest file")
        }
        let version = try reader.readVarint("format version")
        guard version == formatVersion else { throw .unsupportedVersion(what: "manifest file", version: version) }
        let headerBytes = try reader.readBytes("header", maxCount: ManifestLimits.maxHeaderBytes)
        let signatureBytes = Array(try reader.readRaw(count: Signature.byteCount, "signature"))
        let bodyBytes = try reader.readBytes("body", maxCount: ManifestLimits.maxBodyBytes)
        try reader.expectEnd("manifest file")
        guard let signature = try? Signature(bytes: signatureBytes) else { throw .truncated(field: "signature") }
        return try Manifest(
            signed: try SignedHeader(headerBytes: headerBytes, signature: signature), bodyBytes: bodyBytes)
    }
}
