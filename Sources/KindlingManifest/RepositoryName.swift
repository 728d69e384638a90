/// A repository name such as "rust-lang/rust": the one place its byte rules live (Specs/manifest.md, header field
/// 3; the wire carries names only inside manifest headers, so the same rules bind announcements). A value of this
/// type has passed them, so it can go into a store query, a control request or a folder name as it is.
///
/// The rules: 1 to `ManifestLimits.maxRepositoryBytes` bytes of `A-Z a-z 0-9 . _ - /`, no leading or trailing
/// '/', no empty segment, no segment `.` or `..`.
///
/// There is no `ExpressibleByStringLiteral`: a literal that breaks the rules would have to trap at run time.
public struct RepositoryName: Hashable, Comparable, Sendable, CustomStringConvertible {
    /// The name exactly as published and signed.
    public let text: String

    /// Validates `text`; the error says which rule it breaks.
    public init(_ text: String) throws(FormatError) {
        try Self.validate(text)
        self.text = text
    }

    public var description: String { text }

    public static func < (lhs: RepositoryName, rhs: RepositoryName) -> Bool {
        Array(lhs.text.utf8).lexicographicallyPrecedes(Array(rhs.text.utf8))
    }

    /// The name's '/'-separated segments, each non-empty and neither `.` nor `..`.
    public var segments: [Substring] { text.split(separator: "/") }

    /// The name as one folder name (the build root's last component), by an injective encoding: every '/' becomes
    /// '+'. A name never holds '+', so the folder name gives the name back, and two names never share a folder
    /// ("a/b" → "a+b", "a--b" → "a--b", where '/' once became "--" and both landed in "a--b"). A name without '/'
    /// is its own folder name. Not '%2F': the path reaches cargo, rustc and the linker, and a build at a root with
    /// '%' in it fails to link its build scripts (measured: rust-lld "cannot open output file").
    public var folderName: String { segments.joined(separator: "+") }

    /// The inverse of `folderName`, for a folder name that came from one; nil for any other text.
    public init?(folderName: String) {
        guard let name = try? RepositoryName(folderName.replacing("+", with: "/")), name.folderName == folderName
        else { return nil }
        self = name
    }

    /// The only validation of repository names.
    static func validate(_ name: String) throws(FormatError) {
        guard !name.isEmpty, name.utf8.count <= ManifestLimits.maxRepositoryBytes else {
            throw .invalid(field: "repository", reason: "must be 1 to \(ManifestLimits.maxRepositoryBytes) bytes")
        }
        let allowed = name.utf8.allSatisfy { c in
            (c >= UInt8(ascii: "a") && c <= UInt8(ascii: "z")) || (c >= UInt8(ascii: "A") && c <= UInt8(ascii: "Z"))
                || (c >= UInt8(ascii: "0") && c <= UInt8(ascii: "9")) || c == UInt8(ascii: ".")
                || c == UInt8(ascii: "_") || c == UInt8(ascii: "-") || c == UInt8(ascii: "/")
        }
        guard allowed, name.first != "/", name.last != "/", !name.contains("//") else {
            // Escaped: the name may come from a peer and hold control characters.
            throw .invalid(
                field: "repository", reason: "\(String(reflecting: name)) may use only letters, digits and . _ - /")
        }
        // The name becomes a folder name (the build root): no segment may mean "here" or "up".
        for segment in name.utf8.split(separator: UInt8(ascii: "/")) {
            if segment.elementsEqual(".".utf8) || segment.elementsEqual("..".utf8) {
                throw .invalid(field: "repository", reason: "\(String(reflecting: name)) has a '.' or '..' segment")
            }
        }
    }
}

/// A JSON string (the control socket, node.json); decoding validates, so a hostile file or client cannot smuggle in
/// a name that would not be accepted anywhere else.
extension RepositoryName: Codable {
    public init(from decoder: any Decoder) throws {
        let text = try decoder.singleValueContainer().decode(String.self)
        try self.init(text)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(text)
    }
}
