public import Foundation
import KindlingStore
import KindlingSystem

/// A fresh directory under the system temp folder, removed with everything in it when released.
public final class TemporaryDirectory: Sendable {
    public let path: String

    public init(_ label: String = "test") {
        let template = NSTemporaryDirectory() + "kindling-\(label)-XXXXXX"
        var bytes = Array(template.utf8CString)
        let created = bytes.withUnsafeMutableBufferPointer { buffer in buffer.baseAddress.map { mkdtemp($0) } ?? nil }
        precondition(created != nil, "mkdtemp failed: \(String(cString: strerror(errno)))")
        path = String(decoding: bytes.prefix(while: { $0 != 0 }).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    deinit {
        try? FileSystem.removeTree(path)
    }

    public func file(_ relative: String) -> String {
        path + "/" + relative
    }

    public var url: URL { URL(fileURLWithPath: path) }
}
