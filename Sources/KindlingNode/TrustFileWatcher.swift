import Foundation
import KindlingManifest
import KindlingMesh
import Logging

/// Re-reads the node's trust file when it changes and on SIGHUP, and applies it to the running node
/// (Specs/trust.md, "Changes at run time"). A file that fails to load keeps the policy in force: the reason goes to
/// the log and to `status`, and the node never falls back to trusting nothing.
actor TrustFileWatcher {
    let path: String
    let node: MeshNode
    let logger: Logger
    /// What to do with a file that loaded: by default, apply it as the node's whole policy.
    let apply: @Sendable (TrustFile) async -> Void
    /// The file's identity when it was last read (nil: never, or it could not be stat'ed).
    private var seen: FileIdentity?

    /// Cheap enough to poll: one stat. Two seconds keeps "revoked within a few seconds" true without inotify.
    static let pollInterval = Duration.seconds(2)

    init(path: String, node: MeshNode, logger: Logger, apply: (@Sendable (TrustFile) async -> Void)? = nil) {
        self.path = path
        self.node = node
        self.logger = logger
        self.apply = apply ?? { file in await node.applyTrust(TrustPolicy(trust: file)) }
        // The file the node started with (already loaded by the caller) is the baseline.
        self.seen = FileIdentity(path: path)
    }

    /// What identifies a version of the file: a rename replaces the inode, an edit in place changes the size or the
    /// modification time (nanoseconds on Linux).
    struct FileIdentity: Equatable {
        var device: UInt64
        var inode: UInt64
        var size: Int64
        var modified: timespec
        var changed: timespec

        init?(path: String) {
            var info = stat()
            guard stat(path, &info) == 0 else { return nil }
            device = UInt64(info.st_dev)
            inode = UInt64(info.st_ino)
            size = Int64(info.st_size)
            modified = info.st_mtim
            changed = info.st_ctim
        }

        static func == (a: FileIdentity, b: FileIdentity) -> Bool {
            a.device == b.device && a.inode == b.inode && a.size == b.size
                && a.modified.tv_sec == b.modified.tv_sec && a.modified.tv_nsec == b.modified.tv_nsec
                && a.changed.tv_sec == b.changed.tv_sec && a.changed.tv_nsec == b.changed.tv_nsec
        }
    }

    /// Polls until cancelled.
    func poll() async {
        while !Task.isCancelled {
            try? await Task.sleep(for: Self.pollInterval)
            if Task.isCancelled { return }
            let now = FileIdentity(path: path)
            guard now != seen else { continue }
            seen = now
            await reload(because: "the trust file changed")
        }
    }

    /// Reads the file and applies it, or keeps the policy in force and says why.
    func reload(because reason: String) async {
        // Read what is there now: a change seen later re-reads it anyway.
        seen = FileIdentity(path: path)
        let file: TrustFile
        do throws(TrustError) {
            file = try TrustFile.load(path: path)
        } catch {
            let problem =
                "could not reload the trust file \(path) (\(reason)): \(error); the trust policy loaded before "
                + "stays in force until the file loads"
            logger.error("\(problem)")
            await node.setTrustProblem(problem)
            return
        }
        await node.setTrustProblem(nil)
        logger.notice(
            "trust file reloaded", metadata: ["path": "\(path)", "why": "\(reason)", "keys": "\(file.keys.count)"])
        await apply(file)
    }
}
