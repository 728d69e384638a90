/// One direction of a link: a FIFO queue drained at a fixed rate. Bytes handed to it wait for the bytes ahead of
/// them (`busyUntil`), then take `bytes / rate`. A rate of 0 means unlimited (a LAN switch, a data-centre port).
public struct Pipe: Sendable {
    public var bytesPerSecond: Double
    public private(set) var busyUntil: VirtualTime = 0
    /// Bytes that went through, for the report.
    public private(set) var bytes = 0

    public init(bytesPerSecond: Double) {
        self.bytesPerSecond = bytesPerSecond
    }

    /// Queues `size` bytes that reach this pipe from `start` on and cannot leave before `notBefore` (the previous
    /// hop's finish: a transfer is never faster than its slowest hop). Returns when they start and finish here.
    mutating func enqueue(
        _ size: Int, start: VirtualTime, notBefore: VirtualTime
    ) -> (start: VirtualTime, finish: VirtualTime) {
        bytes += size
        guard bytesPerSecond > 0 else { return (start, max(start, notBefore)) }
        let begin = max(start, busyUntil)
        let serialisation = VirtualTime((Double(size) / bytesPerSecond * 1e9).rounded(.up))
        let finish = max(begin + serialisation, notBefore)
        busyUntil = finish
        return (begin, finish)
    }

    public mutating func reset() {
        busyUntil = 0
        bytes = 0
    }
}

/// Where a node sits: its own uplink and downlink, its access latency, and the office (LAN behind one shared
/// uplink) it belongs to, if any.
public struct Attachment: Sendable {
    public var uplink: Pipe
    public var downlink: Pipe
    /// One-way latency between the node and its site's edge (office router or the internet).
    public var latency: VirtualTime
    public var office: Int?
    /// Behind NAT: can dial out, cannot be dialled from outside its office.
    public var natOnly: Bool

    public init(uplink: Pipe, downlink: Pipe, latency: VirtualTime, office: Int?, natOnly: Bool) {
        self.uplink = uplink
        self.downlink = downlink
        self.latency = latency
        self.office = office
        self.natOnly = natOnly
    }
}

/// The links of the simulated network and how a message crosses them.
///
/// A message from A to B goes through A's uplink, then (when A and B are not in the same office) A's office
/// uplink and B's office downlink, then B's downlink, and arrives one path latency after its last byte left the
/// slowest hop. Hops are cut-through: a hop starts on a message as soon as it is free and the message has started
/// at the hop before, and cannot finish before the hop before did. Each hop is FIFO, so concurrent transfers
/// through one hop share it by queueing, and n equal transfers through a hop take n times as long in all.
public struct LinkModel: Sendable {
    public private(set) var nodes: [Attachment]
    /// Per office, traffic leaving it (`officeUp`) and entering it (`officeDown`) through its shared uplink.
    public private(set) var officeUp: [Pipe]
    public private(set) var officeDown: [Pipe]
    /// Extra one-way latency between two sites (two offices, or an office and the internet).
    public var wideAreaLatency: VirtualTime
    /// One-way latency inside an office.
    public var localLatency: VirtualTime
    /// The one machine every node runs on, if any (a benchmark's CPU): every message crosses it after the
    /// sender's uplink, so all transfers together go no faster than its rate.
    public private(set) var host: Pipe?
    /// When the last byte of the latest `send` left the sender's uplink (what a server's serving slot waits for).
    public private(set) var lastUplinkFinish: VirtualTime = 0

    public init(
        nodes: [Attachment], officeUplinkBytesPerSecond: [Double], wideAreaLatency: VirtualTime,
        localLatency: VirtualTime, hostBytesPerSecond: Double? = nil
    ) {
        self.nodes = nodes
        self.officeUp = officeUplinkBytesPerSecond.map { Pipe(bytesPerSecond: $0) }
        self.officeDown = officeUplinkBytesPerSecond.map { Pipe(bytesPerSecond: $0) }
        self.wideAreaLatency = wideAreaLatency
        self.localLatency = localLatency
        self.host = hostBytesPerSecond.map { Pipe(bytesPerSecond: $0) }
    }

    public var nodeCount: Int { nodes.count }

    public func sameOffice(_ a: Int, _ b: Int) -> Bool {
        if let office = nodes[a].office { return office == nodes[b].office }
        return false
    }

    /// Whether `from` can open a connection to `to`: a NAT-only node accepts only from its own office.
    public func canDial(from: Int, to: Int) -> Bool {
        !nodes[to].natOnly || sameOffice(from, to)
    }

    /// One-way latency between two nodes when the links are idle.
    public func latency(from: Int, to: Int) -> VirtualTime {
        if sameOffice(from, to) { return localLatency }
        return nodes[from].latency + wideAreaLatency + nodes[to].latency
    }

    /// Sends `size` bytes from `from` to `to`, handed to the sender's uplink at `time`; returns when the last
    /// byte arrives.
    public mutating func send(_ size: Int, from: Int, to: Int, at time: VirtualTime) -> VirtualTime {
        var hop = nodes[from].uplink.enqueue(size, start: time, notBefore: time)
        lastUplinkFinish = hop.finish
        if var machine = host {
            hop = machine.enqueue(size, start: hop.start, notBefore: hop.finish)
            host = machine
        }
        if !sameOffice(from, to) {
            if let office = nodes[from].office {
                hop = officeUp[office].enqueue(size, start: hop.start, notBefore: hop.finish)
            }
            if let office = nodes[to].office {
                hop = officeDown[office].enqueue(size, start: hop.start, notBefore: hop.finish)
            }
        }
        hop = nodes[to].downlink.enqueue(size, start: hop.start, notBefore: hop.finish)
        return hop.finish + latency(from: from, to: to)
    }

    /// Bytes that entered each office through its uplink.
    public var officeInboundBytes: [Int] { officeDown.map(\.bytes) }
    public var officeOutboundBytes: [Int] { officeUp.map(\.bytes) }
    public func uploadedBytes(_ node: Int) -> Int { nodes[node].uplink.bytes }
}
