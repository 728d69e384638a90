import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingMesh
import KindlingSnapshot
import KindlingSystem
import Logging
import NIOCore
import NIOPosix

/// The node's local control socket (mode 0600, in the store folder), used by `kindling status`, `peers`, `fetch`,
/// `restore` and `publish`. Each connection carries one request line and gets JSON lines back.
struct ControlServer {
    let node: MeshNode
    let path: String
    let logger: Logger

    /// A trust document (up to 1 MiB) travels in base64 inside the request.
    static let maxRequestBytes = 2 << 20
    /// A client has this long to send its request line (the CLI sends it at once).
    static let requestTimeout = TimeAmount.seconds(5)

    /// The listening socket: each accepted connection boxed, so that one the serving loop never takes (it was
    /// stopped first) is closed rather than crashing the node.
    typealias Listener = NIOAsyncChannel<AcceptedConnection<ByteBuffer, ByteBuffer>, Never>

    /// Binds the socket so that no other user can ever connect: it is created inside a fresh 0700 directory,
    /// made 0600, and only then renamed into place.
    func bind() async throws -> Listener {
        let parent = (path as NSString).deletingLastPathComponent
        let directory: String
        do throws(FileError) {
            directory = try FileSystem.makePrivateDirectory(prefix: parent + "/.ctl-")
        } catch {
            throw NodeError.cannotListen(
                "cannot create a private directory in \(parent) (\(error.errno)); check that the store folder is "
                    + "writable")
        }
        defer { try? FileSystem.removeEmptyDirectory(directory) }
        let staging = directory + "/s"
        let server = try await ServerBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .bind(unixDomainSocketPath: staging, cleanupExistingSocketFile: true) { channel in
                channel.eventLoop.makeCompletedFuture {
                    let connection = try NIOAsyncChannel<ByteBuffer, ByteBuffer>(wrappingChannelSynchronously: channel)
                    return AcceptedConnection(connection)
                }
            }
        // Only the node's user may talk to it.
        do throws(FileError) {
            try FileSystem.setMode(staging, 0o600)
            try FileSystem.rename(staging, to: path)
        } catch {
            try? await server.executeThenClose { _ in }
            try? FileSystem.removeFile(staging)
            throw NodeError.cannotListen(
                "cannot put the control socket at \(path) with mode 0600 (\(error.errno)); check the store folder's "
                    + "permissions")
        }
        return server
    }

    func run(_ server: Listener) async {
        do {
            try await withTaskCancellationHandler {
                try await server.executeThenClose { inbound in
                    try await withThrowingDiscardingTaskGroup { group in
                        for try await accepted in inbound {
                            group.addTask {
                                guard let connection = accepted.take() else { return }
                                await handle(connection)
                            }
                        }
                    }
                }
            } onCancel: {
                server.channel.close(promise: nil)
            }
        } catch {
            logger.debug("control socket closed", metadata: ["error": "\(error)"])
        }
        try? FileSystem.removeFile(path)
    }

    private func handle(_ connection: NIOAsyncChannel<ByteBuffer, ByteBuffer>) async {
        // A client that connects and sends no request line in time is hung up on.
        let socket = connection.channel
        let deadline = socket.eventLoop.scheduleTask(in: Self.requestTimeout) { socket.close(promise: nil) }
        try? await connection.executeThenClose { inbound, outbound in
            var request = ByteBuffer()
            for try await var piece in inbound {
                request.writeBuffer(&piece)
                if request.readableBytesView.contains(UInt8(ascii: "\n")) { break }
                guard request.readableBytes <= Self.maxRequestBytes else { return }
            }
            deadline.cancel()
            let line = request.readableBytesView.prefix { $0 != UInt8(ascii: "\n") }
            let send: @Sendable (ControlEvent) async -> Void = { event in
                guard var data = try? JSONEncoder().encode(event) else { return }
                data.append(UInt8(ascii: "\n"))
                try? await outbound.write(ByteBuffer(bytes: data))
            }
            guard let decoded = try? JSONDecoder().decode(ControlRequest.self, from: Data(line)) else {
                await send(ControlEvent(event: .error, message: "malformed control request"))
                return
            }
            await respond(to: decoded, send: send)
        }
    }

    private func respond(to request: ControlRequest, send: @escaping @Sendable (ControlEvent) async -> Void) async {
        switch request.op {
        case .status, .peers:
            await send(ControlEvent(event: .result, status: await node.status()))
        case .snapshots:
            // KindlingMesh still names repositories by their text (issue 11: it is being rewritten).
            let snapshots = await node.knownSnapshots(repository: request.repository?.text).map { item in
                SnapshotInfo(
                    id: item.signed.id.hex, repository: item.signed.header.repositoryName,
                    commit: item.signed.header.commit,
                    createdAt: item.signed.header.createdAt, cacheKey: item.signed.header.cacheKey,
                    bytes: item.signed.header.fileByteCount, local: item.local, holders: item.holders)
            }
            await send(ControlEvent(event: .result, snapshots: snapshots))
        case .announce:
            guard let text = request.manifest, let id = Digest(hex: text) else {
                return await send(ControlEvent(event: .error, message: "announce needs a manifest id"))
            }
            do {
                try await node.announceLocal(id)
                await send(ControlEvent(event: .result, manifest: id.hex))
            } catch {
                await send(ControlEvent(event: .error, message: "\(error)"))
            }
        case .trustPublish:
            guard let text = request.document, let data = Data(base64Encoded: text) else {
                return await send(
                    ControlEvent(event: .error, message: "trust-publish needs the document's bytes in base64"))
            }
            switch await node.publishTrustDocument(Array(data)) {
            case .accepted(let version):
                await send(
                    ControlEvent(
                        event: .result,
                        message: "applied trust document version \(version); announcing it to the node's peers",
                        trustVersion: version))
            case .alreadyCurrent(let version):
                await send(
                    ControlEvent(
                        event: .result, message: "the node holds trust document version \(version) already",
                        trustVersion: version))
            case .needsIntermediate(let version):
                await send(
                    ControlEvent(event: .error, message: "the node needs trust document version \(version) first"))
            case .refused(let reason):
                await send(ControlEvent(event: .error, message: "the node refused the trust document: \(reason)"))
            }
        case .headPublish:
            guard let text = request.document, let data = Data(base64Encoded: text) else {
                return await send(
                    ControlEvent(event: .error, message: "head-publish needs the record's bytes in base64"))
            }
            switch await node.offerHeadRecord(Array(data)) {
            case .accepted(let sequence):
                await send(
                    ControlEvent(
                        event: .result, message: "head record \(sequence) kept; announcing it to the node's peers"))
            case .alreadyHeld(let sequence):
                await send(ControlEvent(event: .result, message: "the node holds head record \(sequence) already"))
            case .refused(let reason):
                await send(ControlEvent(event: .error, message: "the node refused the head record: \(reason)"))
            }
        case .fetch:
            guard let id = await resolve(request) else {
                let what = request.manifest ?? "\(request.repository?.text ?? "?")@\(request.commit ?? "?")"
                // Known, but equivocal: say why it is not used (Specs/trust.md, "Equivocation").
                if let equivocation = await node.equivocations.first(where: {
                    $0.build.repository == request.repository?.text && $0.build.commit == request.commit
                }) {
                    return await send(
                        ControlEvent(event: .error, message: escapedPeerText("refused: \(equivocation)", limit: 4096)))
                }
                return await send(
                    ControlEvent(
                        event: .error,
                        message: "no trusted snapshot \(what) is known to this node (no peer announced one)"))
            }
            let (progress, continuation) = AsyncStream.makeStream(
                of: FetchProgress.self, bufferingPolicy: .bufferingNewest(1))
            await withTaskGroup(of: Void.self) { group in
                group.addTask {
                    for await update in progress { await send(ControlEvent(event: .progress, progress: update)) }
                }
                do {
                    let result = try await node.fetch(id) { continuation.yield($0) }
                    continuation.finish()
                    await group.waitForAll()
                    await send(ControlEvent(event: .result, fetch: result, manifest: id.hex))
                } catch {
                    continuation.finish()
                    await group.waitForAll()
                    await send(ControlEvent(event: .error, message: "\(error)", manifest: id.hex))
                }
            }
        }
    }

    /// A manifest id, or the snapshot `SnapshotSelection` picks among the trusted ones the node knows for a
    /// repository, commit and cache key (the node admitted only trusted headers to its catalogue).
    private func resolve(_ request: ControlRequest) async -> Digest? {
        if let text = request.manifest { return Digest(hex: text) }
        guard let repository = request.repository, let commit = request.commit else { return nil }
        let known = await node.knownSnapshots(repository: repository.text).map { SnapshotCandidate($0.signed) }
        switch SnapshotSelection.select(known, commits: [commit], cacheKey: .including(request.cacheKey ?? [:])) {
        case .found(let candidate, _, _): return candidate.id
        case .none: return nil
        }
    }
}
