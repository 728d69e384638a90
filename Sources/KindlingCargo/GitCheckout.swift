import Foundation
public import KindlingManifest

/// The git facts the cargo integration needs: where the checkout is, which commit, what is tracked, history.
public struct GitCheckout: Sendable {
    /// The absolute, physical path of the checkout's top level.
    public let toplevel: String

    public init(containing directory: String) throws(CargoError) {
        let result = try ProcessRunner.run("git", ["rev-parse", "--show-toplevel"], directory: directory)
        guard result.status == 0 else { throw .notAGitCheckout(directory) }
        toplevel =
            URL(fileURLWithPath: result.stdout.trimmingCharacters(in: .whitespacesAndNewlines))
            .resolvingSymlinksInPath().path
    }

    func git(_ arguments: [String]) throws(CargoError) -> String {
        try ProcessRunner.output("git", ["-C", toplevel] + arguments)
    }

    public func head() throws(CargoError) -> String {
        try git(["rev-parse", "HEAD"]).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// The branch checked out (`git symbolic-ref --short HEAD`), nil on a detached HEAD.
    public func currentBranch() -> String? {
        guard let name = try? git(["symbolic-ref", "--quiet", "--short", "HEAD"]) else { return nil }
        let trimmed = name.trimmingCharacters(in: .whitespacesAndNewlines)
        return trimmed.isEmpty ? nil : trimmed
    }

    /// Uncommitted changes to tracked files, and untracked files that are not ignored (empty when clean).
    public func uncommittedChanges() throws(CargoError) -> [String] {
        try git(["status", "--porcelain"]).split(separator: "\n").map(String.init)
    }

    /// HEAD and its first-parent ancestors, nearest first, at most `limit` commits.
    public func firstParentHistory(limit: Int) throws(CargoError) -> [String] {
        try git(["rev-list", "--first-parent", "--max-count=\(limit)", "HEAD"]).split(separator: "\n").map(String.init)
    }

    /// Paths of tracked files, relative to the top level.
    public func trackedFiles() throws(CargoError) -> [String] {
        try git(["ls-files", "-z", "--cached"]).split(separator: "\0").map(String.init)
    }

    /// The repository's name in the mesh ("owner/name"): `$KINDLING_REPO`, else this checkout's
    /// `git config kindling.repository` (set by `restore --cargo --repo`), else from the `upstream` remote (a fork's
    /// upstream is what bors builds), else the `origin` remote, else the checkout's folder name.
    public func repositoryName() -> String {
        if let name = ProcessInfo.processInfo.environment["KINDLING_REPO"], !name.isEmpty { return name }
        if let name = (try? git(["config", "--get", Self.repositoryConfigKey]))?.trimmingCharacters(
            in: .whitespacesAndNewlines),
            !name.isEmpty
        {
            return name
        }
        let url =
            ["upstream", "origin"].lazy
            .compactMap { (try? self.git(["remote", "get-url", $0]))?.trimmingCharacters(in: .whitespacesAndNewlines) }
            .first { !$0.isEmpty } ?? ""
        var name = url
        if name.hasSuffix(".git") { name.removeLast(4) }
        let parts = name.split(whereSeparator: { $0 == "/" || $0 == ":" }).map(String.init)
        let candidate =
            parts.count >= 2 ? parts.suffix(2).joined(separator: "/") : URL(fileURLWithPath: toplevel).lastPathComponent
        let cleaned = candidate.map { ch -> Character in
            ch.isLetter || ch.isNumber || "._-/".contains(ch) ? ch : "-"
        }
        return String(cleaned).trimmingCharacters(in: CharacterSet(charactersIn: "/"))
    }

    public static let repositoryConfigKey = "kindling.repository"

    /// Remembers the repository name for this checkout, so that `kindling cargo` builds at the same build root as
    /// the restore that named it.
    public func rememberRepositoryName(_ name: RepositoryName) throws(CargoError) {
        _ = try git(["config", Self.repositoryConfigKey, name.text])
    }
}
