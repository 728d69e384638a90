/// A repository pattern of the trust file: `*` matches any run of characters except '/', `**` any run at all,
/// `?` one character except '/'. Everything else matches itself.
public struct RepositoryGlob: Hashable, Sendable, CustomStringConvertible {
    public let pattern: String

    public init(_ pattern: String) {
        self.pattern = pattern
    }

    public var description: String { pattern }

    public func matches(_ repository: RepositoryName) -> Bool { matches(repository.text) }

    public func matches(_ repository: String) -> Bool {
        Self.match(Array(pattern.utf8)[...], Array(repository.utf8)[...])
    }

    private static func match(_ pattern: ArraySlice<UInt8>, _ text: ArraySlice<UInt8>) -> Bool {
        guard let first = pattern.first else { return text.isEmpty }
        let slash = UInt8(ascii: "/")
        if first == UInt8(ascii: "*") {
            let doubled = pattern.dropFirst().first == UInt8(ascii: "*")
            let rest = pattern.dropFirst(doubled ? 2 : 1)
            var candidate = text
            while true {
                if match(rest, candidate) { return true }
                guard let next = candidate.first, doubled || next != slash else { return false }
                candidate = candidate.dropFirst()
            }
        }
        guard let head = text.first else { return false }
        if first == UInt8(ascii: "?") {
            return head != slash && match(pattern.dropFirst(), text.dropFirst())
        }
        return head == first && match(pattern.dropFirst(), text.dropFirst())
    }
}
