import Foundation
import KindlingCrypto
import KindlingWire
import Logging
import NIOCore
import NIOPosix

/// Where and how often LAN announcements go (Specs/wire.md, "LAN discovery").
public struct LANConfiguration: Sendable {
    public var group: String
    public var port: Int
    /// The IPv4 address of the interface to announce on and listen on; 0.0.0.0 lets the system choose.
    public var interface: String
    /// Announcements are rate-limited: at most one per interval (with jitter), like BEP 14 and Syncthing.
    public var interval: Duration
    /// Whether to announce ourselves. Off when nobody on the LAN could connect to us (a loopback-only listener):
    /// we still listen and dial the nodes that announce themselves.
    public var announce = true

    public init(
        group: String = "239.193.75.73", port: Int = 7343, interface: String = "0.0.0.0",
        interval: Duration = .seconds(30)
    ) {
        self.group = group
        self.port = port
        self.interface = interface
        self.interval = interval
    }
}

/// The LAN announcement datagram: "KNDL-LAN", version 1, mesh id, node id, TCP port, and in a private mesh a
/// keyed BLAKE2b tag over all of it (so that only holders of the secret can make us dial anywhere).
struct LANAnnouncement: Equatable, Sendable {
    static let magic: [UInt8] = Array("KNDL-LAN".utf8)
    static let version: UInt8 = 1

    var meshID: Digest
    var nodeID: PublicKey
    var port: UInt16

    func encoded(secret: [UInt8]?) -> [UInt8] {
        var bytes = Self.magic + [Self.version] + meshID.bytes + nodeID.bytes + [UInt8(port >> 8), UInt8(port & 0xff)]
        if let secret { bytes += Blake2b.keyedHash(bytes, key: secret) }
        return bytes
    }

    /// Decodes a datagram of our mesh; nil for anything else (other meshes, bad tags, garbage).
    static func decode(_ bytes: [UInt8], mesh: MeshIdentity) -> LANAnnouncement? {
        let bodyLength = magic.count + 1 + 32 + 32 + 2
        let expected = bodyLength + (mesh.secret == nil ? 0 : 32)
        guard bytes.count == expected, bytes.starts(with: magic), bytes[magic.count] == version else { return nil }
        let body = Array(bytes[0..<bodyLength])
        if let secret = mesh.secret,
            !constantTimeEquals(Blake2b.keyedHash(body, key: secret), Array(bytes[bodyLength...]))
        {
            return nil
        }
        var offset = magic.count + 1
        guard let meshID = Digest(bytes: body[offset..<offset + 32]), meshID == mesh.id else { return nil }
        offset += 32
        guard let nodeID = try? PublicKey(bytes: Array(body[offset..<offset + 32])) else { return nil }
        offset += 32
        let port = UInt16(body[offset]) << 8 | UInt16(body[offset + 1])
        guard port > 0 else { return nil }
        return LANAnnouncement(meshID: meshID, nodeID: nodeID, port: port)
    }
}

/// Finds nodes of the same mesh on the local network by UDP multicast, without configuration. Nodes of other
/// meshes are ignored; static peers and peer exchange keep working where multicast does not (field lesson 7).
struct LANDiscovery {
    let node: MeshNode
    let configuration: LANConfiguration

    func run() async {
        do {
            try await runChannel()
        } catch {
            node.logger.warning("LAN discovery unavailable", metadata: ["error": "\(error)"])
        }
    }

    private func runChannel() async throws {
        let channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelOption(.socketOption(.so_reuseaddr), value: 1)
            .bind(host: "0.0.0.0", port: configuration.port) { channel in
                channel.eventLoop.makeCompletedFuture {
                    try NIOAsyncChannel<AddressedEnvelope<ByteBuffer>, AddressedEnvelope<ByteBuffer>>(
                        wrappingChannelSynchronously: channel)
                }
            }
        let mesh = node.configuration.mesh
        let configuration = self.configuration
        try await withTaskCancellationHandler {
            // Everything after the bind happens inside executeThenClose, so that a failure still closes the channel.
            try await channel.executeThenClose { inbound, outbound in
                let groupAddress = try SocketAddress(ipAddress: configuration.group, port: configuration.port)
                guard let options = channel.channel as? any SocketOptionProvider else { return }
                // Join by interface address with IP_ADD_MEMBERSHIP, as the kernel allows: NIO's joinGroup(device:)
                // refuses interfaces without the MULTICAST flag, which loopback and some VPN links lack.
                var membership = ip_mreq()
                guard inet_pton(AF_INET, configuration.group, &membership.imr_multiaddr) == 1,
                    inet_pton(AF_INET, configuration.interface, &membership.imr_interface) == 1
                else { throw NodeAddressError.notIPv4(configuration.group + " / " + configuration.interface) }
                try await options.unsafeSetSocketOption(level: .ip, name: .ip_add_membership, value: membership).get()
                if configuration.interface != "0.0.0.0" {
                    try await options.setIPMulticastIF(membership.imr_interface).get()
                }
                try await options.setIPMulticastTTL(1).get()
                try await options.setIPMulticastLoop(1).get()
                try await withThrowingTaskGroup(of: Void.self) { group in
                    if configuration.announce {
                        group.addTask {
                            while !Task.isCancelled {
                                let port = await node.listenPort
                                let datagram = LANAnnouncement(meshID: mesh.id, nodeID: node.nodeID, port: port)
                                    .encoded(secret: mesh.secret)
                                try? await outbound.write(
                                    AddressedEnvelope(remoteAddress: groupAddress, data: ByteBuffer(bytes: datagram)))
                                let jitter = Double.random(in: 0.8...1.2)
                                try await Task.sleep(for: configuration.interval * jitter)
                            }
                        }
                    }
                    group.addTask {
                        for try await envelope in inbound {
                            guard
                                let announcement = LANAnnouncement.decode(
                                    Array(envelope.data.readableBytesView), mesh: mesh),
                                let host = envelope.remoteAddress.ipAddress
                            else { continue }
                            await node.learnLANPeer(announcement.nodeID, host: host, port: announcement.port)
                        }
                    }
                    try await group.next()
                    group.cancelAll()
                }
            }
        } onCancel: {
            channel.channel.close(promise: nil)
        }
    }
}

enum NodeAddressError: Error, CustomStringConvertible {
    case notIPv4(String)

    var description: String {
        switch self {
        case .notIPv4(let text):
            return "LAN discovery needs IPv4 addresses for the group and the interface, not \(text)"
        }
    }
}
