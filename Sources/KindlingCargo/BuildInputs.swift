import Foundation
import KindlingStore

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
        var absoluteInputs: [String]
    }

    /// Compiled units from their dep files (`deps/*.d`, and `build/<package>-<hash>/*.d` for build scripts), and
    /// build-script runs from their `rerun-if-changed` lines (`build/<package>-<hash>/output`).
    static func units(targetDirectory: String, profileDirectories: [String]) -> [Unit] {
        var units: [Unit] = []
        func addCompiled(_ relative: String, profile: String) {
            guard let text = try? String(contentsOfFile: targetDirectory + "/" + relative, encoding: .utf8) else { return }
            units.append(
                Unit(file: relative, profile: profile, isBuildScriptRun: false,
                     absoluteInputs: dependencies(inMakefile: text).filter { $0.hasPrefix("/") }))
        }
        for profile in profileDirectories {
            let deps = profile + "/deps"
            for name in (try? FileSystem.contents(of: targetDirectory + "/" + deps)) ?? [] where name.hasSuffix(".d") {
                addCompiled(deps + "/" + name, profile: profile)
            }
            let build = profile + "/build"
            for folder in (try? FileSystem.contents(of: targetDirectory + "/" + build)) ?? [] {
                let directory = build + "/" + folder
                for name in (try? FileSystem.contents(of: targetDirectory + "/" + directory)) ?? [] where name.hasSuffix(".d") {
                    addCompiled(directory + "/" + name, profile: profile)
                }
                let relative = directory + "/output"
                guard let text = try? String(contentsOfFile: targetDirectory + "/" + relative, encoding: .utf8) else { continue }
                let paths = text.split(separator: "\n").compactMap { line -> String? in
                    for prefix in ["cargo::rerun-if-changed=", "cargo:rerun-if-changed="] where line.hasPrefix(prefix) {
                        return String(line.dropFirst(prefix.count))
                    }
                    return nil
                }
                units.append(
                    Unit(file: relative, profile: profile, isBuildScriptRun: true, absoluteInputs: paths.filter { $0.hasPrefix("/") }))
            }
        }
        return units
    }

    /// The prerequisites of a make-style dep file (rustc's `--emit=dep-info`), with `\ ` unescaped.
    static func dependencies(inMakefile text: String) -> [String] {
        var result = Set<String>()
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let colon = line.range(of: ": ") ?? (line.hasSuffix(":") ? line.range(of: ":", options: .backwards) : nil) else { continue }
            var current = ""
            var escaped = false
            for character in line[colon.upperBound...] {
                if escaped {
                    current.append(character)
                    escaped = false
                } else if character == "\\" {
                    escaped = true
                } else if character == " " {
                    if !current.isEmpty { result.insert(current) }
                    current = ""
                } else {
                    current.append(character)
                }
            }
            if !current.isEmpty { result.insert(current) }
        }
        return result.sorted()
    }

    /// Inputs outside the build root and the toolchain: system files a build script watches, files included by
    /// absolute path, registry sources outside the root.
    static func externalInputs(of units: [Unit], root: BuildRoot, sysroot: String?) -> [String] {
        var paths = Set<String>()
        for unit in units {
            for path in unit.absoluteInputs where !path.hasPrefix(root.path + "/") {
                if let sysroot, path.hasPrefix(sysroot + "/") { continue }
                paths.insert(path)
            }
        }
        return paths.sorted()
    }

    /// The sysroot of the toolchain that builds in `directory`.
    static func sysroot(directory: String) -> String? {
        (try? ProcessRunner.output("rustc", ["--print", "sysroot"], directory: directory))?
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }
}
