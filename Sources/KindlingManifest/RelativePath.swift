/// The rules every path in a manifest obeys, so that no entry can land outside the destination directory.
///
/// A path is relative, '/'-separated, with no empty, "." or ".." component, no NUL byte, at most 4096 bytes, each
/// component at most 255 bytes. Entries may not sit below a symlink or a file of the same manifest (checked in
/// `ManifestBody.validateTree`), so a restore never writes through a link.
public enum RelativePath {
    public static func validate(_ path: String) throws(FormatError) {
        let utf8 = path.utf8
        guard !utf8.isEmpty else { throw .unsafePath(path: path, reason: "empty path") }
        guard utf8.count <= ManifestLimits.maxPathBytes else {
            throw .unsafePath(path: path, reason: "longer than \(ManifestLimits.maxPathBytes) bytes")
        }
        guard utf8.first != UInt8(ascii: "/") else { throw .unsafePath(path: path, reason: "absolute path") }
        guard !utf8.contains(0) else { throw .unsafePath(path: path, reason: "contains a NUL byte") }
        for component in utf8.split(separator: UInt8(ascii: "/"), omittingEmptySubsequences: false) {
            if component.isEmpty { throw .unsafePath(path: path, reason: "empty component ('//' or trailing '/')") }
            if component.elementsEqual("..".utf8) { throw .unsafePath(path: path, reason: "'..' component") }
            if component.elementsEqual(".".utf8) { throw .unsafePath(path: path, reason: "'.' component") }
            if component.count > ManifestLimits.maxPathComponentBytes {
                throw .unsafePath(path: path, reason: "a component is longer than 255 bytes")
            }
        }
    }

    /// The ancestors of a valid path, nearest last: "a/b/c" gives ["a", "a/b"].
    public static func ancestors(of path: String) -> [Substring] {
        var result: [Substring] = []
        var index = path.startIndex
        while let slash = path[index...].firstIndex(of: "/") {
            result.append(path[path.startIndex..<slash])
            index = path.index(after: slash)
        }
        return result
    }

    /// `paths` without duplicates and sorted, both by bytes: a `Set<String>` would merge two names that differ only
    /// in Unicode normalization, which the filesystem keeps apart.
    public static func uniqueSortedByBytes(_ paths: some Sequence<String>) -> [String] {
        var seen = Set<[UInt8]>()
        var result: [(bytes: [UInt8], path: String)] = []
        for path in paths {
            let bytes = Array(path.utf8)
            if seen.insert(bytes).inserted { result.append((bytes, path)) }
        }
        return result.sorted { $0.bytes.lexicographicallyPrecedes($1.bytes) }.map(\.path)
    }
}
