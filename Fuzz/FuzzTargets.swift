import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingNode
import NIOCore

@testable import KindlingMesh
@testable import KindlingWire

/// The fuzz targets, one per decoder of bytes that another party controls (Fuzz/README.md). Each decodes its
/// input; a decoder may refuse anything, but must never crash, and what it accepts must be canonical: encoding
/// the decoded value gives back the input (or, for JSON, a fixed point), and decoding an encoding gives back the
/// value. A broken property is a crash (`violated`), which libFuzzer reports with the input that caused it.
enum FuzzTargets {
    static let all: [String: @Sendable ([UInt8]) -> Void] = [
        "frame": frame, "message": message, "handshake": handshake, "header": header, "body": body,
        "manifestfile": manifestFile, "trust": trust, "trustdoc": trustDocument, "lan": lan, "sealed": sealed,
        "control": control, "nodejson": nodeJSON, "headrecord": headRecord,
    ]

    /// Keys and meshes shared with Specs/vectors/wire-v1.json (so the seed corpus reaches the success paths).
    static let privateSecret: [UInt8] = Array(100..<132)
    static let openMesh = MeshIdentity.open(name: "kindling")
    static let privateMesh = MeshIdentity.private(secret: privateSecret)
    static let streamKey: [UInt8] = Array(0..<32)
    static let streamHeader: [UInt8] = Array(200..<224)

    static func violated(_ what: String, _ input: [UInt8]) -> Never {
        fatalError("fuzz property violated: \(what) (input \(Hex.encode(Array(input.prefix(256)))))")
    }

    /// Splits an input into pieces, each a one-byte (or two-byte big-endian, `wide`) length and that many bytes.
    static func pieces(_ bytes: [UInt8], wide: Bool = false) -> [[UInt8]] {
        var result: [[UInt8]] = []
        var offset = 0
        let width = wide ? 2 : 1
        while offset + width <= bytes.count {
            let length = wide ? Int(bytes[offset]) << 8 | Int(bytes[offset + 1]) : Int(bytes[offset])
            offset += width
            let end = min(bytes.count, offset + length)
            result.append(Array(bytes[offset..<end]))
            offset = end
        }
        return result
    }

    // MARK: wire

    /// The frame decoder, fed in pieces as the pipeline feeds it (bytes accumulate in one buffer, frames are taken
    /// while whole): byte 0 picks the limit (handshake or raised, sealed or not) and byte 1 the size of the reads
    /// (at most 32 reads; the last takes the rest, which keeps an input cheap). Every frame it passes on is within
    /// the limit, and the frames re-framed are the bytes it consumed. The pipeline around it (the read gate while
    /// the handshake holds) is tested in KindlingWireTests; a NIO channel per input ran at ~100 inputs a second.
    static func frame(_ input: [UInt8]) {
        guard input.count >= 2 else { return }
        let mode = input[0]
        let readSize = max(1 + Int(input[1]), (input.count - 2) / 32)
        let stream = Array(input[2...])
        let limit = FrameLimit(handshakeFrames: mode & 4 != 0 ? 3 : .max)
        if mode & 1 != 0 { limit.raiseToMessageLimit(sealed: mode & 2 != 0) }
        let decoder = FrameDecoder(limit: limit)
        var buffer = ByteBuffer()
        var reframed: [UInt8] = []
        var offset = 0
        feeding: while offset < stream.count {
            let end = min(stream.count, offset + readSize)
            buffer.writeBytes(stream[offset..<end])
            offset = end
            while true {
                let next: [UInt8]?
                do {
                    next = try decoder.nextFrame(from: &buffer)
                } catch {
                    break feeding
                }
                guard let frame = next else { break }
                guard !frame.isEmpty, frame.count <= limit.current else {
                    violated("frame of \(frame.count) bytes passed a limit of \(limit.current)", input)
                }
                reframed += [UInt8(frame.count >> 24 & 0xff), UInt8(frame.count >> 16 & 0xff)]
                reframed += [UInt8(frame.count >> 8 & 0xff), UInt8(frame.count & 0xff)] + frame
                _ = try? WireMessage.decode(frame)
            }
            buffer.discardReadBytes()
        }
        guard stream.starts(with: reframed) else { violated("frames are not the stream's bytes", input) }
    }

    /// One frame body. Accepted: encode(decode(b)) == b and decode(encode(m)) == m. And the Error encoder: any
    /// text, cut to the limit, makes an Error message the decoder accepts, whose text is a prefix of the original.
    static func message(_ input: [UInt8]) {
        if let decoded = try? WireMessage.decode(input) {
            let encoded = decoded.encoded()
            guard encoded == input else { violated("\(decoded.type) accepted in a non-canonical form", input) }
            guard (try? WireMessage.decode(encoded)) == decoded else {
                violated("\(decoded.type) does not survive encoding", input)
            }
        }
        let text = String(decoding: input, as: UTF8.self)
        let error = WireMessage.error(code: RefusalCode(code: Int(input.first ?? 0)), message: text).encoded()
        // A prefix in UTF-8 bytes: the cut is on a scalar boundary, which may split a grapheme cluster (a
        // character and its combining mark), so String's character-wise hasPrefix would be false.
        guard case .error(_, let sent)? = try? WireMessage.decode(error), text.utf8.starts(with: sent.utf8) else {
            violated("an Error message made by the encoder is refused by the decoder, or is not a prefix", input)
        }
    }

    /// The responder's side of a handshake: byte 0 picks the open or private mesh, the rest is pieces (a one-byte
    /// length each): the peer's Hello, then (private) its stream header and a sealed Auth, or (open) its Auth.
    static func handshake(_ input: [UInt8]) {
        guard let mode = input.first else { return }
        let frames = pieces(Array(input.dropFirst()))
        guard let hello = frames.first else { return }
        let isPrivate = mode & 1 != 0
        let configuration = HandshakeConfiguration(
            nodeKey: fixedKey(2), mesh: isPrivate ? privateMesh : openMesh, listenPort: 7342, agent: "kindling/test")
        var session = HandshakeSession(
            role: .responder, configuration: configuration,
            exchange: EphemeralKeyExchange(seed: [UInt8](repeating: 12, count: 32)),
            challenge: [UInt8](repeating: 22, count: 32))
        _ = session.helloFrame()
        // Auth on its own, before any Hello: decoding and verification must fail cleanly.
        if mode & 2 != 0 { _ = try? session.receiveAuth(frame: hello) }
        guard (try? session.receiveHello(frame: hello)) != nil, frames.count > 1 else { return }
        if isPrivate {
            guard let framing = try? session.receiveStreamHeader(frame: frames[1]), frames.count > 2,
                let opened = try? framing.opener.open(frames[2])
            else { return }
            _ = try? session.receiveAuth(frame: opened)
        } else {
            _ = try? session.receiveAuth(frame: frames[1])
        }
    }

    static func fixedKey(_ byte: UInt8) -> SigningKey {
        guard let key = try? SigningKey(seed: [UInt8](repeating: byte, count: 32)) else {
            fatalError("a 32-byte seed makes a key")
        }
        return key
    }

    /// A LAN announcement datagram, for the open mesh and the private one: accepted ones encode to the datagram.
    static func lan(_ input: [UInt8]) {
        for mesh in [openMesh, privateMesh] {
            guard let announcement = LANAnnouncement.decode(input, mesh: mesh) else { continue }
            guard announcement.encoded(secret: mesh.secret) == input else {
                violated("LAN announcement accepted in a non-canonical form", input)
            }
        }
    }

    /// Sealed frames (pieces with two-byte lengths) opened in order under the vectors' fixed key and header; and
    /// each piece sealed by a fresh sender opens to itself.
    static func sealed(_ input: [UInt8]) {
        let frames = pieces(input, wide: true)
        guard let receiver = try? SecretStreamReceiver(key: streamKey, header: streamHeader) else {
            violated("the fixed key and header make no receiver", input)
        }
        let opener = FrameOpener(receiver)
        for frame in frames {
            guard (try? opener.open(frame)) != nil else { break }
        }
        guard let sender = try? SecretStreamSender(key: streamKey),
            let echo = try? SecretStreamReceiver(key: streamKey, header: sender.header)
        else { violated("cannot make a stream", input) }
        for frame in frames {
            guard (try? echo.open(sender.seal(frame))) == frame else { violated("a sealed frame does not open", input) }
        }
    }

    // MARK: manifest and trust

    static func header(_ input: [UInt8]) {
        guard let decoded = try? ManifestHeader(decoding: input) else { return }
        guard decoded.encoded() == input else { violated("manifest header accepted in a non-canonical form", input) }
        guard (try? ManifestHeader(decoding: decoded.encoded())) == decoded else {
            violated("manifest header does not survive encoding", input)
        }
    }

    static func body(_ input: [UInt8]) {
        guard let decoded = try? ManifestBody(decoding: input) else { return }
        guard decoded.encoded() == input else { violated("manifest body accepted in a non-canonical form", input) }
        guard (try? ManifestBody(decoding: decoded.encoded())) == decoded else {
            violated("manifest body does not survive encoding", input)
        }
    }

    /// The single-file manifest of `restore --manifest` and imports.
    static func manifestFile(_ input: [UInt8]) {
        guard let manifest = try? ManifestFile.decode(input) else { return }
        guard ManifestFile.encode(manifest) == input else {
            violated("manifest file accepted in a non-canonical form", input)
        }
    }

    /// The trust file is JSON, so not canonical: what parses must write out to text that parses to the same.
    static func trust(_ input: [UInt8]) {
        guard let parsed = try? TrustFile.parse(Data(input), path: "fuzz") else { return }
        let written = parsed.encoded()
        guard let again = try? TrustFile.parse(written, path: "fuzz"), again == parsed else {
            violated("trust file does not survive writing: \(String(decoding: written, as: UTF8.self))", input)
        }
        _ = TrustPolicy(trust: parsed)
    }

    /// A trust document, as a file (JSON, from any peer once nodes gossip them) and as canonical bytes. The file:
    /// what decodes writes out to bytes that decode to the same and write out alike (a fixed point), and its
    /// signatures and the update rules run without crashing. The canonical bytes: encode(decode(b)) == b.
    static func trustDocument(_ input: [UInt8]) {
        if let decoded = try? SignedTrustDocument.decode(input) {
            let written = decoded.encoded()
            guard let again = try? SignedTrustDocument.decode(written), again == decoded, again.encoded() == written
            else {
                violated("trust document does not survive writing: \(String(decoding: written, as: UTF8.self))", input)
            }
            guard (try? TrustDocument(canonical: decoded.signedBytes)) == decoded.document else {
                violated("a decoded trust document's signed bytes do not decode to it", input)
            }
            _ = decoded.validSigners(among: decoded.document.roots)
            _ = decoded.document.policy
            _ = try? TrustUpdate.evaluate(
                candidate: decoded, current: nil, configuredRoots: decoded.document.roots,
                now: Date(timeIntervalSince1970: 1_780_000_000))
        }
        guard let document = try? TrustDocument(canonical: input) else { return }
        guard document.encoded() == input else { violated("trust document accepted in a non-canonical form", input) }
    }

    /// A signed head record (Specs/freshness.md), as any peer relays it: what decodes is canonical (its bytes come
    /// back from encoding it), and the acceptance rule runs on it without crashing.
    static func headRecord(_ input: [UInt8]) {
        guard let decoded = try? SignedHeadRecord.decode(input) else { return }
        guard decoded.encoded() == input, decoded.record.encoded() == decoded.signedBytes else {
            violated("head record accepted in a non-canonical form", input)
        }
        guard (try? SignedHeadRecord.decode(decoded.encoded())) == decoded else {
            violated("a decoded head record does not decode again to itself", input)
        }
        let policy = TrustPolicy(trust: TrustFile(keys: [TrustedKey(name: "k", publicKey: decoded.record.publisher)]))
        _ = try? HeadRecordUpdate.evaluate(
            decoded, held: nil, policy: policy, now: Date(timeIntervalSince1970: 1_780_000_000))
    }

    // MARK: node

    /// A control-socket request line (byte 0 = 0) or a reply line (byte 0 = 1; the CLI reads those from a
    /// socket in the store): decoding then encoding reaches a fixed point.
    static func control(_ input: [UInt8]) {
        guard let which = input.first else { return }
        let line = Data(input.dropFirst())
        if which & 1 == 0 {
            guard let request = try? JSONDecoder().decode(ControlRequest.self, from: line) else { return }
            jsonFixedPoint(request, input)
        } else {
            guard let event = try? JSONDecoder().decode(ControlEvent.self, from: line) else { return }
            jsonFixedPoint(event, input)
        }
    }

    /// node.json, and the values the node parses out of it.
    static func nodeJSON(_ input: [UInt8]) {
        guard let settings = try? JSONDecoder().decode(NodeSettings.self, from: Data(input)) else { return }
        jsonFixedPoint(settings, input)
        _ = settings.listen.flatMap(HostPort.init)
        _ = settings.peers?.map(HostPort.init)
        _ = settings.maxSize.flatMap(parseSize)
        _ = settings.uploadLimit.flatMap(parseSize)
        _ = settings.overridden(by: NodeSettings())
    }

    static func jsonFixedPoint<Value: Codable>(_ value: Value, _ input: [UInt8]) {
        let encoder = JSONEncoder()
        encoder.outputFormatting = .sortedKeys
        guard let first = try? encoder.encode(value), let decoded = try? JSONDecoder().decode(Value.self, from: first),
            let second = try? encoder.encode(decoded), first == second
        else { violated("\(Value.self) does not survive encoding", input) }
    }
}
