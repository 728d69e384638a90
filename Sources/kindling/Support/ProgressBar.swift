import Foundation
import KindlingSnapshot
import Synchronization

/// A one-line progress bar on stderr, drawn only when stdout is a terminal (scripts and CI get clean output).
final class ProgressBar: Sendable {
    private let label: String
    private let state = Mutex<(lastDraw: ContinuousClock.Instant?, drawn: Bool)>((nil, false))
    private let start = ContinuousClock.now

    private init(label: String) {
        self.label = label
    }

    /// A progress handler for `label`, or nil when output is not a terminal.
    static func handler(label: String, force: Bool = false) -> (bar: ProgressBar?, handler: ProgressHandler?) {
        guard force || (Terminal.stdoutIsTerminal && Terminal.stderrIsTerminal) else { return (nil, nil) }
        let bar = ProgressBar(label: label)
        return (bar, { done, total in bar.update(done: done, total: total) })
    }

    func update(done: Int, total: Int) {
        let now = ContinuousClock.now
        let shouldDraw = state.withLock { state -> Bool in
            if let last = state.lastDraw, now - last < .milliseconds(100), done < total { return false }
            state.lastDraw = now
            state.drawn = true
            return true
        }
        guard shouldDraw else { return }
        let fraction = total > 0 ? min(1, Double(done) / Double(total)) : 1
        let width = 30
        let filled = Int(fraction * Double(width))
        let elapsed = (now - start).components
        let seconds = Double(elapsed.seconds) + Double(elapsed.attoseconds) / 1e18
        let bar = String(repeating: "#", count: filled) + String(repeating: "-", count: width - filled)
        let line = String(
            format: "\r%@ [%@] %3.0f%% %@ / %@ %@", label, bar, fraction * 100, Format.bytes(done), Format.bytes(total),
            Format.rate(bytes: done, seconds: seconds))
        FileHandle.standardError.write(Data(line.utf8))
    }

    /// Clears the bar so that the next line starts clean.
    func finish() {
        if state.withLock({ $0.drawn }) {
            FileHandle.standardError.write(Data("\r\u{1B}[2K".utf8))
        }
    }
}
