import Foundation

/// The CLI's side of the control socket: plain blocking POSIX I/O (one request, then reply lines until EOF).
public struct ControlClient: Sendable {
    public let path: String

    public init(storeRoot: String) {
        path = storeRoot + "/node.sock"
    }

    /// True when a node is listening on the socket.
    public var isNodeRunning: Bool {
        guard let fd = try? connect() else { return false }
        close(fd)
        return true
    }

    /// Sends `request` and calls `onEvent` for each reply line; returns the final event (result or error).
    public func send(_ request: ControlRequest, onEvent: (ControlEvent) -> Void = { _ in }) throws -> ControlEvent {
        let fd = try connect()
        defer { close(fd) }
        var payload = try JSONEncoder().encode(request)
        payload.append(UInt8(ascii: "\n"))
        try payload.withUnsafeBytes { raw in
            guard let base = raw.baseAddress else { return }
            var offset = 0
            while offset < raw.count {
                let written = write(fd, base + offset, raw.count - offset)
                if written < 0 {
                    if errno == EINTR { continue } else { throw ControlError.io(path: path, code: errno) }
                }
                offset += written
            }
        }
        var buffer = [UInt8](repeating: 0, count: 64 << 10)
        var pending = Data()
        var last: ControlEvent?
        while true {
            let count = read(fd, &buffer, buffer.count)
            if count < 0 {
                if errno == EINTR { continue }
                throw ControlError.io(path: path, code: errno)
            }
            if count == 0 { break }
            pending.append(contentsOf: buffer[0..<count])
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[pending.startIndex..<newline]
                pending = Data(pending[pending.index(after: newline)...])
                guard let event = try? JSONDecoder().decode(ControlEvent.self, from: line) else { continue }
                onEvent(event)
                last = event
            }
        }
        guard let last else { throw ControlError.noReply(path: path) }
        return last
    }

    private func connect() throws -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw ControlError.io(path: path, code: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            throw ControlError.pathTooLong(path: path)
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            raw.copyBytes(from: bytes)
            raw[bytes.count] = 0
        }
        let status = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Foundation.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size))
            }
        }
        guard status == 0 else {
            let code = errno
            close(fd)
            throw ControlError.notRunning(path: path, code: code)
        }
        return fd
    }
}

public enum ControlError: Error, Sendable, CustomStringConvertible {
    case notRunning(path: String, code: Int32)
    case io(path: String, code: Int32)
    case noReply(path: String)
    case pathTooLong(path: String)

    public var description: String {
        switch self {
        case .notRunning(let path, _):
            return "no kindling node is running for this store (no socket at \(path)); start one with 'kindling node'"
        case .io(let path, let code): return "control socket \(path): \(String(cString: strerror(code)))"
        case .noReply(let path): return "the node at \(path) closed the connection without replying"
        case .pathTooLong(let path):
            return "control socket path \(path) is too long for a Unix socket; use a shorter --store"
        }
    }
}
