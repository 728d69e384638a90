/// Why bytes are not a valid manifest, announcement or trust file. The text names the field at fault.
public enum FormatError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(field: String)
    case invalid(field: String, reason: String)
    case outOfRange(field: String, value: UInt64, allowed: ClosedRange<Int>)
    case trailingBytes(what: String, count: Int)
    case badMagic(what: String)
    case unsupportedVersion(what: String, version: UInt64)
    case unsafePath(path: String, reason: String)

    public var description: String {
        switch self {
        case .truncated(let field):
            return "truncated: the data ends inside \(field)"
        case .invalid(let field, let reason):
            return "invalid \(field): \(reason)"
        case .outOfRange(let field, let value, let allowed):
            return "invalid \(field): \(value) is outside \(allowed.lowerBound)...\(allowed.upperBound)"
        case .trailingBytes(let what, let count):
            return "\(count) unexpected bytes after the end of the \(what)"
        case .badMagic(let what):
            return "not a kindling \(what) (wrong magic bytes)"
        case .unsupportedVersion(let what, let version):
            return "\(what) format version \(version) is not supported by this kindling; upgrade kindling"
        case .unsafePath(let path, let reason):
            return "unsafe path '\(path.prefix(200))' in manifest: \(reason)"
        }
    }
}
