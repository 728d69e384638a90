import Foundation
import KindlingSystem

/// Runs cargo so that the checkout, the target directory and CARGO_HOME appear at the build root
/// (Specs/cargo.md, "Build root"): a private user and mount namespace (`unshare`, no root needed) with a tmpfs on
/// the root and bind mounts under it. bors and developers both build this way, so their paths agree by
/// construction. Without namespaces, cargo runs in place and only relocation-proof state is reused.
public struct CargoLauncher: Sendable {
    public let workspace: CargoWorkspace
    public let root: BuildRoot

    public init(workspace: CargoWorkspace, root: BuildRoot) {
        self.workspace = workspace
        self.root = root
    }

    /// True when unprivileged user and mount namespaces work here (some distributions turn them off).
    /// `KINDLING_NO_NAMESPACES=1` turns them off on purpose (to build in place, as where they are unavailable).
    public static let namespacesAvailable: Bool = {
        guard ProcessInfo.processInfo.environment["KINDLING_NO_NAMESPACES"] != "1" else { return false }
        guard let result = try? ProcessRunner.run("unshare", ["--user", "--map-root-user", "--mount", "true"]) else {
            return false
        }
        return result.status == 0
    }()

    public static let unavailableMessage =
        "user namespaces are unavailable here (check the kernel.unprivileged_userns_clone sysctl or AppArmor): "
        + "cargo runs in place, so compiled dependencies are reused where paths match but rustc's incremental "
        + "state is not (it is only valid at the build root's path)"

    /// Inside the namespace (Specs/cargo.md, "Build root"): the real folders are opened first (descriptors 3-5).
    /// When another user could write an ancestor of the root, the highest such one (`private`) gets a private
    /// view: an overlay whose lower layer is the host's folder (so paths under it, such as a vendor folder or a
    /// toolchain, still work) and whose upper layer is a private tmpfs (so nothing the build writes there is seen
    /// by anyone). Before it is mounted, the upper layer gets, at every level from `private` down to the root, a
    /// whiteout for each name cargo and rustup read from ancestors (`.cargo`, `rust-toolchain*`) and a directory of
    /// ours for the next component (which hides a link or file planted there and lets us create the root).
    /// Without an overlay (a kernel before 5.11, or a mount below `private`, which the kernel then locks and which
    /// keeps overlayfs out), `shown` rebuilds the same view on the tmpfs: every host entry of each level from
    /// `private` down to the root's parent is bound (or its link copied) back, but for those names and the next
    /// component, which starts empty. The folders are bound through their descriptors, which nothing mounted
    /// over them can hide.
    static let script = """
        set -e
        root=$1; top=$2; target=$3; home=$4; relative=$5; private=$6; shift 6
        exec 3<"$top" 4<"$target" 5<"$home"
        layers() {
            chmod 1777 "$u" || return 1
            rest=${root#"$private"}; rest=${rest#/}; level=
            while :; do
                mkdir -p "$u$level" || return 1
                for name in .cargo rust-toolchain rust-toolchain.toml; do
                    lower=/proc/self/fd/6$level/$name
                    if [ -e "$lower" ] || [ -L "$lower" ]; then mknod "$u$level/$name" c 0 0 || return 1; fi
                done
                [ -n "$rest" ] || return 0
                level=$level/${rest%%/*}
                case $rest in */*) rest=${rest#*/} ;; *) rest= ;; esac
            done
        }
        show() {
            if [ -L "$1" ]; then ln -s "$(readlink "$1")" "$2"
            elif [ -d "$1" ]; then mkdir "$2" && mount --no-canonicalize --rbind "$1" "$2"
            else : > "$2" && mount --no-canonicalize --bind "$1" "$2"; fi
        }
        shown() {
            host=/proc/self/fd/6; level=$private; rest=${root#"$private"}; rest=${rest#/}
            while [ -n "$rest" ]; do
                next=${rest%%/*}
                for entry in "$host"/* "$host"/.[!.]* "$host"/..?*; do
                    [ -e "$entry" ] || [ -L "$entry" ] || continue
                    name=${entry##*/}
                    case $name in .cargo | rust-toolchain | rust-toolchain.toml | "$next") continue ;; esac
                    show "$entry" "$level/$name" 2>/dev/null || true
                done
                case $rest in */*) rest=${rest#*/} ;; *) return 0 ;; esac
                if [ -d "$host/$next" ] && [ ! -L "$host/$next" ]; then host=$host/$next; else return 0; fi
                level=$level/$next
                mkdir -p "$level"
            done
        }
        if [ -n "$private" ]; then
            exec 6<"$private"
            mount -t tmpfs -o mode=1777 kindling-private "$private"
            u=$private/.kindling-upper; w=$private/.kindling-work
            mkdir "$u" "$w"
            options="lowerdir=/proc/self/fd/6,upperdir=$u,workdir=$w,userxattr"
            if ! { layers 2>/dev/null && mount -t overlay -o "$options" kindling-private "$private" 2>/dev/null; }; then
                rm -rf "$u" "$w"
                shown
            fi
            exec 6<&-
            if [ -n "${TMPDIR:-}" ]; then mkdir -p "$TMPDIR" 2>/dev/null || true; fi
        fi
        mkdir -p "$root"
        mount -t tmpfs -o mode=0755,size=1m kindling-root "$root"
        mkdir "$root/ws" "$root/target" "$root/cargo-home"
        mount --no-canonicalize --bind /proc/self/fd/3 "$root/ws"
        mount --no-canonicalize --bind /proc/self/fd/4 "$root/target"
        mount --no-canonicalize --bind /proc/self/fd/5 "$root/cargo-home"
        exec 3<&- 4<&- 5<&-
        cd "$root/ws/$relative"
        export CARGO_TARGET_DIR="$root/target" CARGO_HOME="$root/cargo-home"
        exec "$@"
        """

    /// The real CARGO_HOME that appears at `<root>/cargo-home`.
    public static var cargoHome: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["CARGO_HOME"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cargo")
    }

    /// The program, arguments and environment that run `cargo arguments` from `directory`: through `unshare` at
    /// the build root when possible, else cargo itself in place (after the checks of `checkInPlace`). The
    /// environment has no variable that names a key and pins the toolchain.
    public func command(
        cargo arguments: [String], directory: String
    ) throws(CargoError) -> (program: String, arguments: [String], environment: [String: String], atBuildRoot: Bool) {
        var environment = BuildEnvironment.scrubbed(ProcessInfo.processInfo.environment)
        environment.merge(workspace.toolchainEnvironment) { $1 }
        let physical = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        guard Self.namespacesAvailable else {
            try Self.checkInPlace(directory: physical, checkoutTop: workspace.checkout.toplevel)
            return ("cargo", arguments, environment, false)
        }
        let relative: String
        if physical == workspace.checkout.toplevel {
            relative = "."
        } else if physical.hasPrefix(workspace.checkout.toplevel + "/") {
            relative = String(physical.dropFirst(workspace.checkout.toplevel.count + 1))
        } else {
            relative = workspace.relativeRoot.isEmpty ? "." : workspace.relativeRoot
        }
        let base = try Self.privateBase(for: root.path)
        // What stays visible above the private base (or above the root) must hold nothing planted.
        try Self.checkAncestors(of: base ?? root.path, checkoutTop: nil)
        // The user's own folders; the build root itself is only ever made inside the namespace.
        for folder in [workspace.targetDirectory, Self.cargoHome] {
            do {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            } catch {
                throw .buildRoot("cannot create \(folder): \(error.localizedDescription)")
            }
        }
        return (
            "unshare",
            [
                "--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", Self.script,
                "kindling-cargo",
                root.path, workspace.checkout.toplevel, workspace.targetDirectory, Self.cargoHome, relative, base ?? "",
                "cargo",
            ] + arguments,
            environment,
            true
        )
    }

    // MARK: Who else could write here

    /// True when a user other than `uid` and root could write the directory `info` describes (group- or
    /// world-writable, sticky or not, or owned by someone else).
    static func writableByOthers(_ info: stat, uid: uid_t) -> Bool {
        info.st_mode & 0o022 != 0 || (info.st_uid != uid && info.st_uid != 0)
    }

    /// The highest existing ancestor of `root` (or `root` itself) that another user could write: the namespace
    /// mounts a private tmpfs over it. Nil when every existing one is ours or root's. `/tmp` for the default root.
    public static func privateBase(for root: String, uid: UInt32? = nil) throws(CargoError) -> String? {
        let uid = uid ?? ProcessControl.userID
        guard root.hasPrefix("/"), let parts = DirectoryDescriptor.components(String(root.dropFirst())) else {
            throw .buildRoot("\(root) is not an absolute path without '.' or '..'; set KINDLING_BUILD_ROOT to one")
        }
        guard let top = status(following: "/"), !writableByOthers(top, uid: uid) else {
            throw .buildRoot("/ is writable by other users")
        }
        var prefix = ""
        for part in parts {
            prefix += "/" + part
            guard let info = status(following: prefix) else { return nil }
            guard info.st_mode & S_IFMT == S_IFDIR else { throw .buildRoot("\(prefix) is not a directory") }
            if writableByOthers(info, uid: uid) { return prefix }
        }
        return nil
    }

    /// What stat (following links) says of `path`; nil when it cannot be inspected.
    private static func status(following path: String) -> stat? {
        (try? FileSystem.status(path, followingLinks: true)) ?? nil
    }

    /// What cargo and rustup read from a directory's ancestors: `.cargo/config{,.toml}` and `rust-toolchain*`.
    static let plantable = [".cargo", "rust-toolchain", "rust-toolchain.toml"]

    /// Refuses when `path`'s ancestors (or, with `checkoutTop`, those above the checkout: the checkout's own files
    /// are the commit's) hold a `.cargo` or `rust-toolchain*` another user owns or could rewrite. Returns the
    /// ancestors other users could write (where such a file could still appear later).
    @discardableResult
    static func checkAncestors(
        of path: String, checkoutTop: String?, uid: uid_t = ProcessControl.userID
    ) throws(CargoError) -> [String] {
        var writable: [String] = []
        var current = URL(fileURLWithPath: checkoutTop ?? path).deletingLastPathComponent().path
        while true {
            if let info = status(following: current) {
                if writableByOthers(info, uid: uid) { writable.append(current) }
                for name in plantable {
                    let entry = (current == "/" ? "" : current) + "/" + name
                    // The files first, so that the message names what cargo would read.
                    if name == ".cargo" {
                        for file in ["config", "config.toml"] { try checkEntry(entry + "/" + file, uid: uid) }
                    }
                    try checkEntry(entry, uid: uid)
                }
            }
            if current == "/" { return writable }
            current = URL(fileURLWithPath: current).deletingLastPathComponent().path
        }
    }

    private static func checkEntry(_ path: String, uid: uid_t) throws(CargoError) {
        guard let info = (try? FileSystem.status(path)) ?? nil else { return }
        if info.st_uid != uid && info.st_uid != 0 {
            throw .plantedFile(path: path, reason: "belongs to another user (uid \(info.st_uid))")
        }
        if info.st_mode & S_IFMT != S_IFLNK && info.st_mode & 0o022 != 0 {
            throw .plantedFile(path: path, reason: "is writable by other users")
        }
    }

    /// Without namespaces cargo runs in place, from the user's own checkout, and Kindling chooses no path for it
    /// (the build root is then only a name in the cache key and the record). What is left to check is what cargo
    /// and rustup would read above the checkout: a `.cargo` or `rust-toolchain*` that another user owns or could
    /// rewrite is refused, naming it. Returns the ancestors others could write, where one could appear later.
    @discardableResult
    public static func checkInPlace(directory: String, checkoutTop: String) throws(CargoError) -> [String] {
        try checkAncestors(of: directory, checkoutTop: checkoutTop)
    }

    /// Runs cargo to completion with inherited standard input and output; returns its exit status.
    public func run(cargo arguments: [String], directory: String) throws -> Int32 {
        let (program, programArguments, environment, _) = try command(cargo: arguments, directory: directory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + programArguments
        process.environment = environment
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Replaces this process with cargo (so signals and the exit status are cargo's own).
    public func exec(cargo arguments: [String], directory: String) throws -> Never {
        let (program, programArguments, environment, _) = try command(cargo: arguments, directory: directory)
        do throws(FileError) {
            try ProcessControl.replace(with: program, arguments: [program] + programArguments, environment: environment)
        } catch {
            throw CargoError.toolMissing("\(program) (\(error.errno))")
        }
    }
}
