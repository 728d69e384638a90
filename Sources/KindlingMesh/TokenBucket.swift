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
