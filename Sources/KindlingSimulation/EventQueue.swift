/// A point of virtual time: nanoseconds since the simulation started. Integers, so that the order of events
/// never depends on floating-point rounding.
public typealias VirtualTime = Int64

extension VirtualTime {
    public static func seconds(_ value: Double) -> VirtualTime { VirtualTime((value * 1e9).rounded()) }
    public var secondsValue: Double { Double(self) / 1e9 }
}

/// The pending events of a discrete-event simulation: a binary min-heap ordered by time, then by insertion order,
/// so two events at the same instant always run in the order they were scheduled (determinism).
public struct EventQueue<Event> {
    private struct Entry {
        var time: VirtualTime
        var sequence: UInt64
        var event: Event

        @inline(__always) func precedes(_ other: Entry) -> Bool {
            time < other.time || (time == other.time && sequence < other.sequence)
        }
    }

    private var heap: [Entry] = []
    private var nextSequence: UInt64 = 0

    public init() {}

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    public var nextTime: VirtualTime? { heap.first?.time }

    public mutating func schedule(_ event: Event, at time: VirtualTime) {
        heap.append(Entry(time: time, sequence: nextSequence, event: event))
        nextSequence &+= 1
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard heap[child].precedes(heap[parent]) else { break }
            heap.swapAt(child, parent)
            child = parent
        }
    }

    /// Removes and returns the earliest event.
    public mutating func pop() -> (time: VirtualTime, event: Event)? {
        guard !heap.isEmpty else { return nil }
        let first = heap[0]
        let last = heap.removeLast()
        if !heap.isEmpty {
            heap[0] = last
            var parent = 0
            let count = heap.count
            while true {
                let left = 2 * parent + 1
                guard left < count else { break }
                let right = left + 1
                var smallest = left
                if right < count, heap[right].precedes(heap[left]) { smallest = right }
                guard heap[smallest].precedes(heap[parent]) else { break }
                heap.swapAt(smallest, parent)
                parent = smallest
            }
        }
        return (first.time, first.event)
    }
}
