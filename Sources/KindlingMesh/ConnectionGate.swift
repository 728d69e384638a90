import Foundation
import KindlingSystem
import NIOCore
import Synchronization

/// Bounds on what remote peers can make a node hold before they are known (Specs/wire.md, "Limits"): sockets
/// still in their handshake, per source address and in all, and a reserve of descriptors that no socket may take.
///
/// Why the reserve: libdispatch, which runs Swift concurrency on Linux, opens `/proc/<tid>/stat` to watch its
/// worker pool and crashes the process (SIGILL) when that open fails with EMFILE. A node whose sockets used the
/// last descriptors died within seconds under a connection flood.
final class ConnectionGate: Sendable {
    struct Limits: Sendable {
        var pendingPerSource: Int
        var pendingTotal: Int
        var descriptorReserve: Int
    }

    private struct Pending {
        var source: String
        var channel: any Channel
        var opened: ContinuousClock.Instant
    }

    private struct State {
        var pending: [ObjectIdentifier: Pending] = [:]
        var pendingBySource: [String: Int] = [:]
        /// TCP sockets of this node that are open (accepted or dialled, any stage).
        var sockets = 0
        /// Descriptors open that are not those sockets (store files, pipes, event loops), as last measured.
        var baseline = 0
        var counters = ConnectionCounters()
    }

    let limits: Limits
    /// The soft RLIMIT_NOFILE when the node started.
    let descriptorLimit: Int
    private let state = Mutex(State())

    init(limits: Limits, descriptorLimit: Int = DescriptorLimit.current) {
        self.limits = limits
        self.descriptorLimit = descriptorLimit
        state.withLock { $0.baseline = DescriptorLimit.openDescriptors() ?? 0 }
    }

    /// True while one more socket leaves at least the reserve free.
    private static func hasRoom(_ state: State, limit: Int, reserve: Int) -> Bool {
        state.baseline + state.sockets + 1 + reserve <= limit
    }

    /// Decides on a socket just accepted (on the listener's event loop, before anything else sees it). Refused
    /// sockets are closed at once; admitted ones count as pending until `handshakeCompleted` or their close.
    func admitInbound(_ channel: any Channel) -> Bool {
        let source = channel.remoteAddress?.ipAddress ?? "?"
        let id = ObjectIdentifier(channel)
        let (admitted, evicted) = state.withLock { state -> (Bool, (any Channel)?) in
            guard Self.hasRoom(state, limit: descriptorLimit, reserve: limits.descriptorReserve) else {
                state.counters.refusedForDescriptors += 1
                return (false, nil)
            }
            let fromSource = state.pendingBySource[source] ?? 0
            guard fromSource < limits.pendingPerSource else {
                state.counters.refusedPending += 1
                return (false, nil)
            }
            var evicted: (any Channel)?
            if state.pending.count >= limits.pendingTotal {
                // Full: a newcomer from a less represented source takes the oldest slot of the busiest source, so
                // that one address (or a few) flooding us cannot keep everyone else out.
                guard let (busiest, count) = state.pendingBySource.max(by: { $0.value < $1.value }),
                    count > fromSource + 1,
                    let victim = state.pending.filter({ $0.value.source == busiest }).min(by: {
                        $0.value.opened < $1.value.opened
                    })
                else {
                    state.counters.refusedPending += 1
                    return (false, nil)
                }
                Self.forget(victim.key, in: &state)
                evicted = victim.value.channel
                state.counters.evictedPending += 1
            }
            state.pending[id] = Pending(source: source, channel: channel, opened: .now)
            state.pendingBySource[source, default: 0] += 1
            state.sockets += 1
            return (true, evicted)
        }
        evicted?.close(promise: nil)
        guard admitted else { return false }
        channel.closeFuture.whenComplete { [self] _ in
            state.withLock { state in
                Self.forget(id, in: &state)
                state.sockets -= 1
            }
        }
        return true
    }

    private static func forget(_ id: ObjectIdentifier, in state: inout State) {
        guard let pending = state.pending.removeValue(forKey: id) else { return }
        let left = (state.pendingBySource[pending.source] ?? 1) - 1
        state.pendingBySource[pending.source] = left > 0 ? left : nil
    }

    /// The peer authenticated: its socket no longer counts against the pre-handshake caps (the peer slots bound it).
    func handshakeCompleted(_ channel: any Channel) {
        state.withLock { Self.forget(ObjectIdentifier(channel), in: &$0) }
    }

    /// Takes a socket for an outgoing dial; false (and nothing taken) when it would eat into the reserve.
    func reserveOutbound() -> Bool {
        state.withLock { state in
            guard Self.hasRoom(state, limit: descriptorLimit, reserve: limits.descriptorReserve) else {
                state.counters.skippedDials += 1
                return false
            }
            state.sockets += 1
            return true
        }
    }

    /// An authenticated inbound peer was disconnected to make room for another.
    func noteEvictedPeer() {
        state.withLock { $0.counters.evictedPeers += 1 }
    }

    /// Gives back a socket taken by `reserveOutbound` (the dial failed, or its connection closed).
    func releaseOutbound() {
        state.withLock { $0.sockets -= 1 }
    }

    /// Re-measures the descriptors that are not our sockets. Called once a second by the maintenance loop; counting
    /// `/proc/self/fd` costs a directory read, so it is not done per accept.
    func recount() {
        guard let open = DescriptorLimit.openDescriptors() else { return }
        state.withLock { state in state.baseline = max(0, open - state.sockets) }
    }

    struct Snapshot: Sendable {
        var pending: Int
        var sockets: Int
        var counters: ConnectionCounters
    }

    var snapshot: Snapshot {
        state.withLock { Snapshot(pending: $0.pending.count, sockets: $0.sockets, counters: $0.counters) }
    }
}

/// What a node's connection gate refused, for status and tests.
public struct ConnectionCounters: Sendable, Codable, Equatable {
    /// Connections closed at accept: over the per-source or total pre-handshake cap.
    public var refusedPending = 0
    /// Connections closed at accept because fewer than the reserve of descriptors would have been left.
    public var refusedForDescriptors = 0
    /// Pre-handshake connections closed to make room for one from a less represented source.
    public var evictedPending = 0
    /// Outgoing dials skipped because descriptors were short.
    public var skippedDials = 0
    /// Authenticated inbound peers disconnected to make room for another (they had done nothing useful).
    public var evictedPeers = 0
}

/// How many descriptors the node may use (the calls are `ResourceLimits`'; the choices are here).
public enum DescriptorLimit {
    /// The soft RLIMIT_NOFILE now (1024, the usual default, when it cannot be read).
    public static var current: Int {
        guard let limit = try? ResourceLimits.openFiles() else { return 1024 }
        return min(limit.soft, Int(Int32.max))  // RLIM_INFINITY reads as Int.max
    }

    /// Raises the soft RLIMIT_NOFILE to the hard limit (at most 2^20: nobody needs more, and some kernels refuse
    /// more than `nr_open`). Returns the soft limit before and after; a refused raise leaves it as it was.
    @discardableResult
    public static func raiseSoftToHard() -> (before: Int, after: Int) {
        guard var limit = try? ResourceLimits.openFiles() else { return (current, current) }
        let before = limit.soft
        let target = min(limit.hard, 1 << 20)
        if limit.soft < target {
            limit.soft = target
            try? ResourceLimits.setOpenFiles(limit)
        }
        return (before, current)
    }

    /// Descriptors open in this process; nil where that cannot be read (no procfs, or no descriptor left).
    public static func openDescriptors() -> Int? {
        ResourceLimits.openDescriptorCount()
    }
}
