import Foundation

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

    static let script = """
        set -e
        root=$1; top=$2; target=$3; home=$4; relative=$5; shift 5
        mount -t tmpfs -o mode=0755,size=1m kindling-root "$root"
        mkdir -p "$root/ws" "$root/target" "$root/cargo-home"
        mount --bind "$top" "$root/ws"
        mount --bind "$target" "$root/target"
        mount --bind "$home" "$root/cargo-home"
        cd "$root/ws/$relative"
        export CARGO_TARGET_DIR="$root/target" CARGO_HOME="$root/cargo-home"
        exec "$@"
        """

    /// The real CARGO_HOME that appears at `<root>/cargo-home`.
    public static var cargoHome: String {
        let environment = ProcessInfo.processInfo.environment
        return environment["CARGO_HOME"] ?? ((environment["HOME"] ?? NSHomeDirectory()) + "/.cargo")
    }

    /// The program and arguments that run `cargo arguments` from `directory`: through `unshare` at the build
    /// root when possible, else cargo itself.
    public func command(cargo arguments: [String], directory: String) throws -> (program: String, arguments: [String], atBuildRoot: Bool) {
        guard Self.namespacesAvailable else { return ("cargo", arguments, false) }
        let physical = URL(fileURLWithPath: directory).resolvingSymlinksInPath().path
        let relative: String
        if physical == workspace.checkout.toplevel {
            relative = "."
        } else if physical.hasPrefix(workspace.checkout.toplevel + "/") {
            relative = String(physical.dropFirst(workspace.checkout.toplevel.count + 1))
        } else {
            relative = workspace.relativeRoot.isEmpty ? "." : workspace.relativeRoot
        }
        for folder in [root.path, workspace.targetDirectory, Self.cargoHome] {
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
        }
        return (
            "unshare",
            ["--user", "--map-root-user", "--mount", "--propagation", "private", "sh", "-c", Self.script, "kindling-cargo",
             root.path, workspace.checkout.toplevel, workspace.targetDirectory, Self.cargoHome, relative, "cargo"] + arguments,
            true
        )
    }

    /// Runs cargo to completion with inherited standard input and output; returns its exit status.
    public func run(cargo arguments: [String], directory: String) throws -> Int32 {
        let (program, programArguments, _) = try command(cargo: arguments, directory: directory)
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + programArguments
        process.currentDirectoryURL = URL(fileURLWithPath: directory)
        try process.run()
        process.waitUntilExit()
        return process.terminationStatus
    }

    /// Replaces this process with cargo (so signals and the exit status are cargo's own).
    public func exec(cargo arguments: [String], directory: String) throws -> Never {
        let (program, programArguments, _) = try command(cargo: arguments, directory: directory)
        let argv = ([program] + programArguments).map { strdup($0) } + [nil]
        execvp(program, argv)
        throw CargoError.toolMissing("\(program) (\(String(cString: strerror(errno))))")
    }
}
