import Foundation
import KindlingSystem

/// Runs a program to completion and captures its output (git, cargo, rustc).
struct ProcessRunner {
    struct Output {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    static func run(
        _ program: String, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
    ) throws(CargoError) -> Output {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = [program] + arguments
        if let directory { process.currentDirectoryURL = URL(fileURLWithPath: directory) }
        // Never a key in what the cargo integration runs (git, cargo, rustc, rustup).
        var merged = BuildEnvironment.scrubbed(ProcessInfo.processInfo.environment)
        for (key, value) in environment { merged[key] = value }
        process.environment = merged
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw .toolMissing(program)
        }
        let errorData = ErrorCollector(err.fileHandleForReading)
        let outData = Data(PipeReading.readToEnd(out.fileHandleForReading.fileDescriptor))
        process.waitUntilExit()
        let stderr = errorData.finish()
        if process.terminationStatus == 127 && String(decoding: stderr, as: UTF8.self).contains("No such file") {
            throw .toolMissing(program)
        }
        return Output(
            status: process.terminationStatus, stdout: String(decoding: outData, as: UTF8.self),
            stderr: String(decoding: stderr, as: UTF8.self))
    }

    /// Runs and returns stdout, throwing when the status is not 0.
    static func output(
        _ program: String, _ arguments: [String], directory: String? = nil, environment: [String: String] = [:]
    ) throws(CargoError) -> String {
        let result = try run(program, arguments, directory: directory, environment: environment)
        guard result.status == 0 else {
            throw .commandFailed(
                command: ([program] + arguments).joined(separator: " "), status: result.status, output: result.stderr)
        }
        return result.stdout
    }
}

/// Drains a pipe on a background thread so that a child writing a lot to stderr never blocks.
private final class ErrorCollector: @unchecked Sendable {
    // @unchecked: `data` is written by the reading thread and read only after `group.wait()` has ordered it.
    private var data = Data()
    private let group = DispatchGroup()

    init(_ handle: FileHandle) {
        group.enter()
        DispatchQueue.global().async {
            self.data = Data(PipeReading.readToEnd(handle.fileDescriptor))
            self.group.leave()
        }
    }

    func finish() -> Data {
        group.wait()
        return data
    }
}
