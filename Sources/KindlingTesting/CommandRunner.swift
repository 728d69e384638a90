public import Foundation
import KindlingSystem

/// Runs the built `kindling` binary (or any program) and captures its output, for end-to-end tests.
public struct CommandResult: Sendable, CustomStringConvertible {
    public var status: Int32
    public var stdout: String
    public var stderr: String

    public var lines: [String] { stdout.split(separator: "\n").map(String.init) }
    public var lastLine: String { lines.last ?? "" }
    public var description: String { "exit \(status)\nstdout:\n\(stdout)\nstderr:\n\(stderr)" }
}

public enum CommandRunner {
    /// The `kindling` binary next to the test bundle (both live in the build products folder).
    public static var kindlingPath: String {
        if let override = ProcessInfo.processInfo.environment["KINDLING_BIN"] { return override }
        let executable = URL(fileURLWithPath: CommandLine.arguments[0]).resolvingSymlinksInPath()
        var directory = executable.deletingLastPathComponent()
        // swift test runs `<products>/kindlingPackageTests.xctest` (a file on Linux, a bundle elsewhere).
        while !FileManager.default.isExecutableFile(atPath: directory.appendingPathComponent("kindling").path),
            directory.path != "/"
        {
            directory = directory.deletingLastPathComponent()
        }
        return directory.appendingPathComponent("kindling").path
    }

    /// Runs `kindling` with `arguments`; stdin is empty.
    @discardableResult
    public static func kindling(
        _ arguments: [String], environment: [String: String] = [:], directory: String? = nil
    ) throws -> CommandResult {
        try run(kindlingPath, arguments, environment: environment, directory: directory)
    }

    @discardableResult
    public static func run(
        _ program: String, _ arguments: [String], environment: [String: String] = [:], directory: String? = nil
    ) throws -> CommandResult {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: program)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes to the end before waiting, so a chatty child cannot block on a full pipe.
        let group = DispatchGroup()
        nonisolated(unsafe) var errData = Data()
        group.enter()
        DispatchQueue.global().async {
            errData = Data(PipeReading.readToEnd(err.fileHandleForReading.fileDescriptor))
            group.leave()
        }
        let outData = Data(PipeReading.readToEnd(out.fileHandleForReading.fileDescriptor))
        group.wait()
        process.waitUntilExit()
        return CommandResult(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: errData, as: UTF8.self))
    }
}

extension CommandRunner {
    /// Starts `kindling` in the background (output discarded), for tests that kill it midway.
    public static func startKindling(_ arguments: [String], environment: [String: String] = [:]) throws -> Process {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: kindlingPath)
        process.arguments = arguments
        var merged = ProcessInfo.processInfo.environment
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        process.standardOutput = FileHandle.nullDevice
        process.standardError = FileHandle.nullDevice
        process.standardInput = FileHandle.nullDevice
        try process.run()
        return process
    }
}
