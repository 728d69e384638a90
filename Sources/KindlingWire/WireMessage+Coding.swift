import KindlingCrypto
import KindlingManifest

extension WireMessage {
    /// The frame body: the type byte followed by the payload (Specs/wire.md). The length prefix is the codec's.
    public func encoded() -> [UInt8] {
        var w = CanonicalWriter()
        w.writeByte(type.rawValue)
        switch self {
        case .hello(let hello):
            w.writeRaw(Hello.magic)
            w.writeVarint(hello.minVersion)
            w.writeVarint(hello.maxVersion)
            w.writeDigest(hello.meshID)
            w.writeByte(hello.isPrivate ? 1 : 0)
            w.writeRaw(hello.exchangeKey)
            w.writeRaw(hello.challenge)
        case .streamHeader(let header):
            w.writeRaw(header)
        case .auth(let auth):
            w.writeRaw(auth.nodeID.bytes)
            w.writeRaw(auth.signature.bytes)
            w.writeVarint(UInt64(auth.listenPort))
            w.writeVarint(auth.capabilities)
            w.writeString(auth.agent)
        case .announce(let signed):
            w.writeBytes(signed.headerBytes)
            w.writeRaw(signed.signature.bytes)
        case .have(let manifest, let availability):
            w.writeDigest(manifest)
            switch availability {
            case .complete:
                w.writeByte(1)
            case .partial(let bits):
                w.writeByte(0)
                w.writeBytes(bits.bytes)
            }
        case .haveChunks(let manifest, let indices):
            w.writeDigest(manifest)
            w.writeVarint(indices.count)
            for index in indices { w.writeVarint(UInt64(index)) }
        case .holder(let notice):
            w.writeDigest(notice.manifest)
            w.writeRaw(notice.nodeID.bytes)
            w.writeString(notice.host)
            w.writeVarint(UInt64(notice.port))
        case .catalogDigest(let count, let digest):
            w.writeVarint(count)
            w.writeDigest(digest)
        case .catalogRequest, .getPeers:
            break
        case .catalog(let ids, let more):
            w.writeByte(more ? 1 : 0)
            w.writeVarint(ids.count)
            for id in ids { w.writeDigest(id) }
        case .announceRequest(let ids):
            w.writeVarint(ids.count)
            for id in ids { w.writeDigest(id) }
        case .getBody(let manifest, let offset, let length):
            w.writeDigest(manifest)
            w.writeVarint(offset)
            w.writeVarint(length)
        case .body(let manifest, let offset, let bytes):
            w.writeDigest(manifest)
            w.writeVarint(offset)
            w.writeBytes(bytes)
        case .getChunk(let request, let chunk):
            w.writeVarint(UInt64(request))
            w.writeDigest(chunk)
        case .chunk(let request, let chunk, let plainLength, let compressed):
            w.writeVarint(UInt64(request))
            w.writeDigest(chunk)
            w.writeVarint(plainLength)
            w.writeBytes(compressed)
        case .noChunk(let request, let chunk, let reason):
            w.writeVarint(UInt64(request))
            w.writeDigest(chunk)
            w.writeByte(reason.rawValue)
        case .cancel(let request):
            w.writeVarint(UInt64(request))
        case .peers(let peers):
            w.writeVarint(peers.count)
            for peer in peers {
                w.writeRaw(peer.nodeID.bytes)
                w.writeString(peer.host)
                w.writeVarint(UInt64(peer.port))
            }
        case .ping(let nonce), .pong(let nonce):
            w.writeVarint(nonce)
        case .error(let code, let message):
            w.writeVarint(code.code)
            w.writeString(Self.truncated(message, toUTF8Bytes: WireLimits.maxErrorMessageBytes))
        case .trustVersion(let version), .getTrust(let version):
            w.writeVarint(version)
        case .trustDocument(let version, let bytes):
            w.writeVarint(version)
            w.writeBytes(bytes)
        case .headRecord(let bytes):
            w.writeBytes(bytes)
        }
        return w.bytes
    }

    /// The longest prefix of `text` of at most `limit` UTF-8 bytes that ends on a scalar boundary. Cutting the
    /// bytes anywhere else and repairing them would append U+FFFD (3 bytes) and could exceed the limit, which the
    /// receiver rejects as a protocol error (Specs/wire.md, "Messages").
    static func truncated(_ text: String, toUTF8Bytes limit: Int) -> String {
        let bytes = Array(text.utf8)
        guard bytes.count > limit else { return text }
        var end = limit
        // A Swift string is valid UTF-8, so moving back over continuation bytes (10xxxxxx) finds a scalar start.
        while end > 0 && bytes[end] & 0xC0 == 0x80 { end -= 1 }
        return String(decoding: bytes[..<end], as: UTF8.self)
    }

    /// Decodes a frame body (type byte and payload). Returns nil for an extension type (0x80 and above) this node does
    /// not know, which the receiver ignores; throws for anything malformed or an unknown core type.
    public static func decode(_ frame: [UInt8]) throws(WireError) -> WireMessage? {
        guard let typeByte = frame.first else { throw .malformed(.truncated(field: "message type")) }
        guard let type = MessageType(rawValue: typeByte) else {
            if typeByte >= MessageType.firstExtensionType { return nil }
            throw .unknownMessageType(typeByte)
        }
        var r = CanonicalReader(frame, offset: 1)
        do {
            let message = try decodePayload(type, &r)
            try r.expectEnd("\(type) message")
            return message
        } catch {
            throw .malformed(error)
        }
    }

    private static func decodePayload(
        _ type: MessageType, _ r: inout CanonicalReader
    ) throws(FormatError) -> WireMessage {
        switch type {
        case .hello:
            guard try r.readRaw(count: 4, "hello magic").elementsEqual(Hello.magic) else {
                throw .badMagic(what: "hello")
            }
            let minVersion = try r.readVarint("min version")
            let maxVersion = try r.readVarint("max version")
            let meshID = try r.readDigest("mesh id")
            let isPrivate = try readFlag(&r, "private flag")
            let key = Array(try r.readRaw(count: 32, "exchange key"))
            let challenge = Array(try r.readRaw(count: 32, "challenge"))
            return .hello(
                Hello(
                    minVersion: minVersion, maxVersion: maxVersion, meshID: meshID, isPrivate: isPrivate,
                    exchangeKey: key, challenge: challenge))
        case .streamHeader:
            return .streamHeader(Array(try r.readRaw(count: 24, "stream header")))
        case .auth:
            let nodeID = try readKey(&r)
            let signature = try readSignature(&r)
            let port = try r.readInt("listen port", in: 0...65535)
            let capabilities = try r.readVarint("capabilities")
            let agent = try r.readString("agent", maxCount: WireLimits.maxAgentBytes)
            return .auth(
                Auth(
                    nodeID: nodeID, signature: signature, listenPort: UInt16(port), capabilities: capabilities,
                    agent: agent))
        case .announce:
            let header = try r.readBytes("announced header", maxCount: ManifestLimits.maxHeaderBytes)
            let signature = try readSignature(&r)
            return .announce(try SignedHeader(headerBytes: header, signature: signature))
        case .have:
            let manifest = try r.readDigest("manifest id")
            if try readFlag(&r, "complete flag") { return .have(manifest: manifest, availability: .complete) }
            let bitfield = try r.readBytes("bitfield", maxCount: ManifestLimits.maxChunkReferences / 8)
            return .have(manifest: manifest, availability: .partial(Bitset(bytes: bitfield)))
        case .haveChunks:
            let manifest = try r.readDigest("manifest id")
            let count = try r.readInt("index count", in: 0...WireLimits.maxHaveIndicesPerFrame)
            var indices: [UInt32] = []
            indices.reserveCapacity(count)
            for _ in 0..<count {
                indices.append(UInt32(try r.readInt("chunk index", in: 0...ManifestLimits.maxChunkReferences - 1)))
            }
            return .haveChunks(manifest: manifest, indices: indices)
        case .holder:
            let manifest = try r.readDigest("manifest id")
            let nodeID = try readKey(&r)
            let host = try r.readString("host", maxCount: WireLimits.maxHostBytes)
            let port = try r.readInt("port", in: 1...65535)
            return .holder(HolderNotice(manifest: manifest, nodeID: nodeID, host: host, port: UInt16(port)))
        case .catalogDigest:
            let count = try r.readInt("catalog size", in: 0...Int(Int32.max))
            return .catalogDigest(count: count, digest: try r.readDigest("catalog digest"))
        case .catalogRequest:
            return .catalogRequest
        case .catalog:
            let more = try readFlag(&r, "more flag")
            return .catalog(ids: try readIDs(&r, limit: WireLimits.maxCatalogIDsPerFrame), more: more)
        case .announceRequest:
            return .announceRequest(ids: try readIDs(&r, limit: WireLimits.maxAnnounceRequestIDs))
        case .getBody:
            let manifest = try r.readDigest("manifest id")
            let offset = try r.readInt("body offset", in: 0...ManifestLimits.maxBodyBytes)
            let length = try r.readInt("body length", in: 1...WireLimits.maxBodyPieceBytes)
            return .getBody(manifest: manifest, offset: offset, length: length)
        case .body:
            let manifest = try r.readDigest("manifest id")
            let offset = try r.readInt("body offset", in: 0...ManifestLimits.maxBodyBytes)
            return .body(
                manifest: manifest, offset: offset,
                bytes: try r.readBytes("body piece", maxCount: WireLimits.maxBodyPieceBytes))
        case .getChunk:
            let request = UInt32(try r.readInt("request id", in: 0...Int(UInt32.max)))
            return .getChunk(request: request, chunk: try r.readDigest("chunk id"))
        case .chunk:
            let request = UInt32(try r.readInt("request id", in: 0...Int(UInt32.max)))
            let chunk = try r.readDigest("chunk id")
            let plainLength = try r.readInt("chunk length", in: 1...ManifestLimits.maxChunkBytes)
            let compressed = try r.readBytes("chunk data", maxCount: WireLimits.maxFrameBytes)
            return .chunk(request: request, chunk: chunk, plainLength: plainLength, compressed: compressed)
        case .noChunk:
            let request = UInt32(try r.readInt("request id", in: 0...Int(UInt32.max)))
            let chunk = try r.readDigest("chunk id")
            // Only the reasons of Specs/wire.md: reading another value as "not held" accepted two encodings of it.
            let reasonByte = try r.readByte("reason")
            guard let reason = NoChunkReason(rawValue: reasonByte) else {
                throw .invalid(field: "reason", reason: "\(reasonByte) is neither 0 (not held) nor 1 (busy)")
            }
            return .noChunk(request: request, chunk: chunk, reason: reason)
        case .cancel:
            return .cancel(request: UInt32(try r.readInt("request id", in: 0...Int(UInt32.max))))
        case .getPeers:
            return .getPeers
        case .peers:
            let count = try r.readInt("peer count", in: 0...WireLimits.maxPeersPerFrame)
            var peers: [PeerAddress] = []
            for _ in 0..<count {
                let nodeID = try readKey(&r)
                let host = try r.readString("host", maxCount: WireLimits.maxHostBytes)
                let port = try r.readInt("port", in: 1...65535)
                peers.append(PeerAddress(nodeID: nodeID, host: host, port: UInt16(port)))
            }
            return .peers(peers)
        case .ping:
            return .ping(try r.readVarint("nonce"))
        case .pong:
            return .pong(try r.readVarint("nonce"))
        case .error:
            let code = try r.readInt("error code", in: 0...Int(UInt16.max))
            return .error(
                code: RefusalCode(code: code),
                message: try r.readString("error message", maxCount: WireLimits.maxErrorMessageBytes))
        case .trustVersion:
            return .trustVersion(try r.readVarint("trust document version"))
        case .getTrust:
            return .getTrust(version: try r.readVarint("trust document version"))
        case .trustDocument:
            let version = try r.readVarint("trust document version")
            return .trustDocument(
                version: version,
                bytes: try r.readBytes("trust document", maxCount: WireLimits.maxTrustDocumentBytes))
        case .headRecord:
            return .headRecord(try r.readBytes("head record", maxCount: WireLimits.maxHeadRecordBytes))
        }
    }

    private static func readFlag(_ r: inout CanonicalReader, _ field: String) throws(FormatError) -> Bool {
        switch try r.readByte(field) {
        case 0: return false
        case 1: return true
        case let other: throw .invalid(field: field, reason: "\(other) is neither 0 nor 1")
        }
    }

    private static func readKey(_ r: inout CanonicalReader) throws(FormatError) -> PublicKey {
        let bytes = Array(try r.readRaw(count: PublicKey.byteCount, "node id"))
        guard let key = try? PublicKey(bytes: bytes) else { throw .truncated(field: "node id") }
        return key
    }

    private static func readSignature(_ r: inout CanonicalReader) throws(FormatError) -> Signature {
        let bytes = Array(try r.readRaw(count: Signature.byteCount, "signature"))
        guard let signature = try? Signature(bytes: bytes) else { throw .truncated(field: "signature") }
        return signature
    }

    private static func readIDs(_ r: inout CanonicalReader, limit: Int) throws(FormatError) -> [Digest] {
        let count = try r.readInt("id count", in: 0...limit)
        var ids: [Digest] = []
        ids.reserveCapacity(count)
        for _ in 0..<count { ids.append(try r.readDigest("manifest id")) }
        return ids
    }
}
