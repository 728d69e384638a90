/// One entry of a head record as the cargo integration sees it (the CLI reads them from the node's status).
public struct HeadPointer: Sendable, Hashable {
    public var branch: String
    public var profile: String
    public var commit: String
    /// The manifest id, hex.
    public var manifest: String
    /// When bors signed the record (ISO 8601).
    public var issued: String

    public init(branch: String, profile: String, commit: String, manifest: String, issued: String) {
        self.branch = branch
        self.profile = profile
        self.commit = commit
        self.manifest = manifest
        self.issued = issued
    }
}

/// What bors's head records say about the snapshot `kindling cargo` is about to restore (Specs/freshness.md,
/// "Uses"): a newer build of this profile exists on HEAD's first-parent history, nearer to HEAD than the one chosen.
public enum HeadAdvice {
    public struct Newer: Sendable, Equatable {
        public var head: HeadPointer
        /// Commits behind HEAD.
        public var distance: Int

        public init(head: HeadPointer, distance: Int) {
            self.head = head
            self.distance = distance
        }
    }

    /// The entry nearest HEAD among `heads` whose commit is on `history` (HEAD first) and whose profile builds into
    /// the same folder as `profile`, when it is nearer than `chosenDistance` (nil: nothing chosen). Entries of the
    /// branch checked out come first at equal distance; other branches count too, since a commit on HEAD's history
    /// is an ancestor whatever branch bors published it for.
    public static func newer(
        than chosenDistance: Int?, history: [String], heads: [HeadPointer], profile: String, branch: String?
    ) -> Newer? {
        let folder = CargoCacheKey.profileDirectory(profile)
        var position: [String: Int] = [:]
        for (index, commit) in history.enumerated() where position[commit] == nil { position[commit] = index }
        let found = heads.compactMap { head -> Newer? in
            guard CargoCacheKey.profileDirectory(head.profile) == folder, let distance = position[head.commit] else {
                return nil
            }
            return Newer(head: head, distance: distance)
        }
        .min { a, b in
            if a.distance != b.distance { return a.distance < b.distance }
            return (a.head.branch == branch ? 0 : 1) < (b.head.branch == branch ? 0 : 1)
        }
        guard let found else { return nil }
        if let chosenDistance, found.distance >= chosenDistance { return nil }
        return found
    }
}
