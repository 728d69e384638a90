import Synchronization

/// An upload rate limit: callers take bytes and sleep when the bucket is empty. The burst is one second's worth.
final class TokenBucket: Sendable {
    private let rate: Double
    private let state: Mutex<(tokens: Double, updated: ContinuousClock.Instant)>

    init(bytesPerSecond: Int) {
        rate = Double(max(1, bytesPerSecond))
        state = Mutex((Double(max(1, bytesPerSecond)), .now))
    }

    /// Waits until `bytes` may be sent.
    func take(_ bytes: Int) async {
        let wait = state.withLock { state -> Double in
            let now = ContinuousClock.now
            state.tokens = min(rate, state.tokens + (now - state.updated).seconds * rate)
            state.updated = now
            state.tokens -= Double(bytes)
            return state.tokens >= 0 ? 0 : -state.tokens / rate
        }
        if wait > 0 { try? await Task.sleep(for: .milliseconds(Int(wait * 1000))) }
    }
}

/// A count of work in progress with a ceiling, shared by all connections of a node.
final class ServingGauge: Sendable {
    private let count = Atomic<Int>(0)

    /// Takes a slot if fewer than `limit` are taken.
    func acquire(limit: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = count.compareExchange(expected: current, desired: current + 1, ordering: .relaxed)
            if exchanged { return true }
            current = original
        }
        return false
    }

    func release() {
        count.wrappingSubtract(1, ordering: .relaxed)
    }
}

/// A version number bumped by one actor and read by others without awaiting it.
public final class VersionCounter: Sendable {
    private let counter = Atomic<Int>(0)

    public init() {}

    public var value: Int { counter.load(ordering: .acquiring) }

    func bump() {
        counter.wrappingAdd(1, ordering: .releasing)
    }
}
