import Synchronization

/// A rate limit: an upload limit in bytes (callers take bytes and sleep when the bucket is empty), or a budget of
/// messages or requests per peer (`tryTake` refuses instead of waiting). Starts full.
final class TokenBucket: Sendable {
    private let rate: Double
    private let burst: Double
    private let state: Mutex<(tokens: Double, updated: ContinuousClock.Instant)>

    /// `perSecond` tokens a second, at most `burst` saved up (default: one second's worth).
    init(perSecond: Double, burst: Double? = nil) {
        rate = max(0.001, perSecond)
        self.burst = max(1, burst ?? perSecond)
        state = Mutex((max(1, burst ?? perSecond), .now))
    }

    convenience init(bytesPerSecond: Int) {
        self.init(perSecond: Double(max(1, bytesPerSecond)))
    }

    private func refill(_ state: inout (tokens: Double, updated: ContinuousClock.Instant)) {
        let now = ContinuousClock.now
        state.tokens = min(burst, state.tokens + (now - state.updated).seconds * rate)
        state.updated = now
    }

    /// Waits until `count` tokens may be spent (the bucket may go into debt: a large take waits in proportion).
    func take(_ count: Int) async {
        let wait = state.withLock { state -> Double in
            refill(&state)
            state.tokens -= Double(count)
            return state.tokens >= 0 ? 0 : -state.tokens / rate
        }
        if wait > 0 { try? await Task.sleep(for: .milliseconds(max(1, Int(wait * 1000)))) }
    }

    /// Spends `count` tokens if the bucket holds them; false (nothing spent) otherwise.
    func tryTake(_ count: Int = 1) -> Bool {
        state.withLock { state in
            refill(&state)
            guard state.tokens >= Double(count) else { return false }
            state.tokens -= Double(count)
            return true
        }
    }
}

/// A count of work in progress with a ceiling, shared by all connections of a node.
final class ServingGauge: Sendable {
    private let count = Atomic<Int>(0)

    /// Takes a slot if fewer than `limit` are taken.
    func acquire(limit: Int) -> Bool {
        var current = count.load(ordering: .relaxed)
        while current < limit {
            let (exchanged, original) = count.compareExchange(
                expected: current, desired: current + 1, ordering: .relaxed)
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
