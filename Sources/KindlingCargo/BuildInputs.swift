import Foundation
import KindlingManifest
import KindlingStore
import KindlingSystem

/// Reads the inputs cargo and rustc recorded in a target directory: rustc's make-style dep files
/// (`deps/*.d`) and build scripts' `rerun-if-changed` lines (`build/*/output`). The cargo integration uses them to
/// find inputs outside the checkout, which the source record cannot cover.
enum BuildInputs {
    /// A unit and the absolute paths it depends on.
    struct Unit {
        /// `.d` file or build `output` file, relative to the target dir.
        var file: String
        /// The profile folder it belongs to ("debug", "<triple>/debug").
        var profile: String
        var isBuildScriptRun: Bool
        /// Absolute, normalised paths: rustc's relative ones resolved against the workspace root it ran in.
        var absoluteInputs: [String]
        /// A build-script run that names inputs relative to its package (not resolved: the package is not known).
        var hasRelativeInputs = false

        /// The package of a build-script run: `build/<package>-<hash>/output`.
        var buildScriptPackage: String? {
            guard isBuildScriptRun else { return nil }
            let folder = URL(fileURLWithPath: file).deletingLastPathComponent().lastPathComponent
            return folder.lastIndex(of: "-").map { String(folder[..<$0]) }
        }
    }

    /// Compiled units from their dep files (`deps/*.d`, and `build/<package>-<hash>/*.d` for build scripts), and
    /// build-script runs from their `rerun-if-changed` lines (`build/<package>-<hash>/output`).
    /// `workspaceRoot` is where cargo ran rustc (the workspace root at the build root): rustc names the files of
    /// workspace members relative to it.
    static func units(targetDirectory: String, profileDirectories: [String], workspaceRoot: String) -> [Unit] {
        // Read relative to the target's descriptor, never through a symlink: a snapshot's (or a build's) link
        // must not make us read, or publish the paths named in, a file outside the target.
        guard let target = try? DirectoryDescriptor(opening: targetDirectory) else { return [] }
        var units: [Unit] = []
        func text(_ relative: String) -> String? { target.read(relative).map { String(decoding: $0, as: UTF8.self) } }
        func addCompiled(_ relative: String, profile: String) {
            guard let text = text(relative) else { return }
            let inputs = dependencies(inMakefile: text).map {
                normalised($0.hasPrefix("/") ? $0 : workspaceRoot + "/" + $0)
            }
            units.append(Unit(file: relative, profile: profile, isBuildScriptRun: false, absoluteInputs: inputs))
        }
        for profile in profileDirectories {
            let deps = profile + "/deps"
            for name in target.names(deps) where name.hasSuffix(".d") {
                addCompiled(deps + "/" + name, profile: profile)
            }
            let build = profile + "/build"
            for folder in target.names(build) {
                let directory = build + "/" + folder
                for name in target.names(directory) where name.hasSuffix(".d") {
                    addCompiled(directory + "/" + name, profile: profile)
                }
                let relative = directory + "/output"
                guard let text = text(relative) else { continue }
                let paths = text.split(separator: "\n").compactMap { line -> String? in
                    for prefix in ["cargo::rerun-if-changed=", "cargo:rerun-if-changed="] where line.hasPrefix(prefix) {
                        return String(line.dropFirst(prefix.count))
                    }
                    return nil
                }
                units.append(
                    Unit(
                        file: relative, profile: profile, isBuildScriptRun: true,
                        absoluteInputs: paths.filter { $0.hasPrefix("/") }.map(normalised),
                        hasRelativeInputs: paths.contains { !$0.hasPrefix("/") }))
            }
        }
        return units
    }

    /// `path` without `.` and `..` components (lexically: the way rustc and cargo compare paths).
    static func normalised(_ path: String) -> String {
        var parts: [Substring] = []
        for part in path.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." {
                if !parts.isEmpty { parts.removeLast() }
                continue
            }
            parts.append(part)
        }
        return "/" + parts.joined(separator: "/")
    }

    /// The prerequisites of a make-style dep file (rustc's `--emit=dep-info`), with `\ ` unescaped.
    static func dependencies(inMakefile text: String) -> [String] {
        var result: [String] = []
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard
                let colon = line.range(of: ": ")
                    ?? (line.hasSuffix(":") ? line.range(of: ":", options: .backwards) : nil)
            else { continue }
            var current = ""
            var escaped = false
            for character in line[colon.upperBound...] {
                if escaped {
                    current.append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == " " {
                    if !current.isEmpty { result.append(current) }
                    current = ""
                } else {
                    current.append(character)
                }
            }
            if !current.isEmpty { result.append(current) }
        }
        // By bytes: a Set<String> would merge two inputs whose names differ only in Unicode normalization.
        return RelativePath.uniqueSortedByBytes(result)
    }

    /// Inputs outside the build root and the toolchain: system files a build script watches, files included by
    /// absolute path, registry sources outside the root.
    static func externalInputs(of units: [Unit], root: BuildRoot, sysroot: String?) -> [String] {
        var paths: [String] = []
        for unit in units {
            for path in unit.absoluteInputs where !path.hasPrefix(root.path + "/") {
                if let sysroot, path.hasPrefix(sysroot + "/") { continue }
                paths.append(path)
            }
        }
        return RelativePath.uniqueSortedByBytes(paths)
    }

    /// The sysroot of the toolchain that builds in `directory`.
    static func sysroot(directory: String, environment: [String: String]) -> String? {
        (try? ProcessRunner.output("rustc", ["--print", "sysroot"], directory: directory, environment: environment))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
