import Foundation
public import KindlingManifest

/// A cargo workspace inside a git checkout, as the cargo integration sees it.
public struct CargoWorkspace: Sendable {
    public let checkout: GitCheckout
    /// The physical directory of the workspace's Cargo.toml.
    public let root: String
    /// `root` relative to the checkout's top level ("" when they are the same).
    public let relativeRoot: String
    /// The real target directory (what `cargo metadata` reports outside any build root).
    public let targetDirectory: String
    public let repository: RepositoryName
    /// The toolchain every cargo and rustc of this workspace runs with (nil without rustup).
    public let toolchain: ToolchainPin?
    /// What pins it, for the environment of cargo and rustc.
    public var toolchainEnvironment: [String: String] { toolchain?.environment ?? [:] }

    /// Finds the workspace containing `directory` (or named by `manifestPath`).
    public static func locate(
        directory: String, manifestPath: String? = nil, repository: RepositoryName? = nil
    ) throws(CargoError) -> CargoWorkspace {
        var arguments = ["metadata", "--format-version", "1", "--no-deps", "--offline"]
        if let manifestPath { arguments += ["--manifest-path", manifestPath] }
        let toolchain = try ToolchainPin.resolve(directory: directory)
        let json = try ProcessRunner.run(
            "cargo", arguments, directory: directory, environment: toolchain?.environment ?? [:])
        guard json.status == 0 else {
            throw .notAWorkspace(json.stderr.split(separator: "\n").first.map(String.init) ?? directory)
        }
        guard let object = try? JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any],
            let workspaceRoot = object["workspace_root"] as? String, let target = object["target_directory"] as? String
        else { throw .notAWorkspace("cargo metadata gave no workspace root") }
        let root = URL(fileURLWithPath: workspaceRoot).resolvingSymlinksInPath().path
        let checkout = try GitCheckout(containing: root)
        let relative = root == checkout.toplevel ? "" : String(root.dropFirst(checkout.toplevel.count + 1))
        // Unless given, the name comes from the environment or git config, and becomes a folder of the build root.
        let name: RepositoryName
        if let repository {
            name = repository
        } else {
            let text = checkout.repositoryName()
            do throws(FormatError) { name = try RepositoryName(text) } catch {
                throw .invalidRepository(name: text, reason: error.description)
            }
        }
        return CargoWorkspace(
            checkout: checkout, root: root, relativeRoot: relative,
            targetDirectory: URL(fileURLWithPath: target).standardizedFileURL.path, repository: name,
            toolchain: toolchain)
    }
}

/// The fixed absolute place where every build of a repository happens, on bors and on every developer machine
/// (cargo-relocation-facts §4: rustc reuses incremental state only at the identical physical path):
///
/// - `<path>/ws`: the checkout's top level,
/// - `<path>/target`: the target directory,
/// - `<path>/cargo-home`: CARGO_HOME, so registry sources sit at the same path too.
///
/// `kindling cargo` makes the real folders appear there in a private mount namespace.
public struct BuildRoot: Hashable, Sendable {
    public let path: String

    public init(path: String) {
        self.path = path
    }

    /// `$KINDLING_BUILD_ROOT/<repo>` (default base `/tmp/kindling-build`), the name as one folder name
    /// (`RepositoryName.folderName`: '/' becomes '+', so no two repositories share a root). This is a name, never a
    /// host folder: it exists only inside the build's own mount namespace, where the writable base above it
    /// (`/tmp`) is replaced by a private overlay (`CargoLauncher`, Specs/security.md); without namespaces cargo runs
    /// in the checkout and the root is only recorded, never created or entered.
    public static func forRepository(_ repository: RepositoryName, base: String? = nil) -> BuildRoot {
        let base = base ?? ProcessInfo.processInfo.environment["KINDLING_BUILD_ROOT"] ?? "/tmp/kindling-build"
        return BuildRoot(path: base + "/" + repository.folderName)
    }

    public var workspace: String { path + "/ws" }

    /// Where the cargo workspace sits at the build root, given its folder relative to the checkout.
    public func workspaceRoot(relative: String) -> String {
        relative.isEmpty ? workspace : workspace + "/" + relative
    }
    public var target: String { path + "/target" }
    public var cargoHome: String { path + "/cargo-home" }
}
