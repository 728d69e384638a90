import Dispatch
import Synchronization

/// Runs blocking work (file I/O, hashing, compression) on several threads outside Swift's cooperative pool,
/// so that a long capture or restore neither starves async tasks nor serialises on one core.
public enum ParallelWork {
    /// The number of workers to use: the active processor count, at least 1.
    public static var defaultWorkerCount: Int { max(1, System.activeProcessorCount) }

    /// Calls `body` with worker indexes `0..<workers` concurrently and waits for all of them. The first error
    /// thrown by any worker is rethrown; `shouldStop` tells the others to finish early.
    public static func run<E: Error>(
        workers: Int = defaultWorkerCount,
        _ body: @Sendable (_ worker: Int, _ shouldStop: () -> Bool) throws(E) -> Void
    ) throws(E) {
        let firstError = Mutex<E?>(nil)
        let stop: @Sendable () -> Bool = { firstError.withLock { $0 != nil } }
        DispatchQueue.concurrentPerform(iterations: max(1, workers)) { worker in
            do throws(E) {
                try body(worker, stop)
            } catch {
                firstError.withLock { if $0 == nil { $0 = error } }
            }
        }
        if let error = firstError.withLock({ $0 }) { throw error }
    }

    /// Hands out the items of `items` one by one to `workers` threads, in order.
    public static func forEach<Item: Sendable, E: Error>(
        _ items: [Item], workers: Int = defaultWorkerCount,
        _ body: @Sendable (_ worker: Int, _ item: Item) throws(E) -> Void
    ) throws(E) {
        try forEach(items, workers: workers, state: { _ in () }) { (_: inout Void, item: Item) throws(E) in
            try body(0, item)
        }
    }

    /// Like `forEach`, with state that each worker makes once and reuses for all its items (a zstd context,
    /// a buffer): per-item setup is what makes many small files slow.
    public static func forEach<Item: Sendable, State, E: Error>(
        _ items: [Item], workers: Int = defaultWorkerCount, state makeState: @Sendable (_ worker: Int) -> State,
        _ body: @Sendable (_ state: inout State, _ item: Item) throws(E) -> Void
    ) throws(E) {
        let next = Atomic<Int>(0)
        try run(workers: min(workers, max(1, items.count))) { (worker, shouldStop) throws(E) in
            var state = makeState(worker)
            while !shouldStop() {
                let index = next.wrappingAdd(1, ordering: .relaxed).oldValue
                guard index < items.count else { return }
                try body(&state, items[index])
            }
        }
    }
}

enum System {
    static var activeProcessorCount: Int {
        ProcessInfoShim.activeProcessorCount
    }
}
