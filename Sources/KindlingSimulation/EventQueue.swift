/// A point of virtual time: nanoseconds since the simulation started. Integers, so that the order of events
/// never depends on floating-point rounding.
public typealias VirtualTime = Int64

extension VirtualTime {
    public static func seconds(_ value: Double) -> VirtualTime { VirtualTime((value * 1e9).rounded()) }
    public var secondsValue: Double { Double(self) / 1e9 }
}

/// The pending events of a discrete-event simulation: a binary min-heap ordered by time, then by insertion order,
/// so two events at the same instant always run in the order they were scheduled (determinism).
///
/// The heap holds small fixed-size entries (time, sequence, slot); the events themselves (an enum with a wire
/// message in it, about a hundred bytes) stay in a slot array and are moved twice, in and out, rather than copied
/// at every level of every sift (which cost a fifth of a run's time).
public struct EventQueue<Event> {
    private struct Entry {
        var time: VirtualTime
        var sequence: UInt64
        var slot: Int32

        @inline(__always) func precedes(_ other: Entry) -> Bool {
            time < other.time || (time == other.time && sequence < other.sequence)
        }
    }

    private var heap: [Entry] = []
    private var slots: [Event?] = []
    /// Slots whose event was popped, to reuse.
    private var freeSlots: [Int32] = []
    private var nextSequence: UInt64 = 0

    public init() {}

    public var count: Int { heap.count }
    public var isEmpty: Bool { heap.isEmpty }
    public var nextTime: VirtualTime? { heap.first?.time }

    public mutating func schedule(_ event: Event, at time: VirtualTime) {
        let slot: Int32
        if let reused = freeSlots.popLast() {
            slot = reused
            slots[Int(reused)] = event
        } else {
            slot = Int32(slots.count)
            slots.append(event)
        }
        let entry = Entry(time: time, sequence: nextSequence, slot: slot)
        nextSequence &+= 1
        // Sift up with a hole: parents move down, the new entry is written once.
        heap.append(entry)
        var child = heap.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard entry.precedes(heap[parent]) else { break }
            heap[child] = heap[parent]
            child = parent
        }
        heap[child] = entry
    }

    /// Removes and returns the earliest event.
    public mutating func pop() -> (time: VirtualTime, event: Event)? {
        guard let first = heap.first else { return nil }
        let last = heap.removeLast()
        let count = heap.count
        if count > 0 {
            // Sift down with a hole from the root: smaller children move up, `last` is written once.
            var parent = 0
            while true {
                var child = 2 * parent + 1
                guard child < count else { break }
                if child + 1 < count, heap[child + 1].precedes(heap[child]) { child += 1 }
                guard heap[child].precedes(last) else { break }
                heap[parent] = heap[child]
                parent = child
            }
            heap[parent] = last
        }
        guard let event = slots[Int(first.slot)].take() else {
            preconditionFailure("every heap entry names a filled slot")
        }
        freeSlots.append(first.slot)
        return (first.time, event)
    }
}
