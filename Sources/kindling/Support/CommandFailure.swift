import ArgumentParser
import Foundation
import KindlingManifest

/// An error that the CLI reports as one line, `kindling: error: ...`, with exit status 1.
struct CommandFailure: Error, CustomStringConvertible {
    let description: String

    init(_ description: String) {
        self.description = description
    }
}

/// Runs a command body, turning any error into one line on stderr and a non-zero exit.
func reportingErrors<R>(_ body: () async throws -> R) async throws -> R {
    do {
        return try await body()
    } catch let exit as ExitCode {
        throw exit
    } catch let clean as CleanExit {
        throw clean
    } catch {
        Terminal.printError(String(describing: error))
        throw ExitCode.failure
    }
}

enum Terminal {
    static func printError(_ message: String) {
        FileHandle.standardError.write(Data("kindling: error: \(message)\n".utf8))
    }

    static func printWarning(_ message: String) {
        FileHandle.standardError.write(Data("kindling: warning: \(message)\n".utf8))
    }

    static func printNote(_ message: String) {
        FileHandle.standardError.write(Data("kindling: \(message)\n".utf8))
    }

    static var stdoutIsTerminal: Bool { isatty(STDOUT_FILENO) == 1 }
    static var stderrIsTerminal: Bool { isatty(STDERR_FILENO) == 1 }
}

/// Refuses a `--repo` that no manifest could carry (`.`, `..`, empty, control characters...), before it reaches a
/// store query, a node or a build-root path.
func validateRepositoryOption(_ repository: String?) throws {
    _ = try repositoryOption(repository)
}

/// The `--repo` option as a name (nil when not given), refused as `validateRepositoryOption` says.
func repositoryOption(_ repository: String?) throws -> RepositoryName? {
    guard let repository else { return nil }
    do {
        return try RepositoryName(repository)
    } catch {
        throw ValidationError("--repo \(repository.debugDescription) is not a repository name: \(error)")
    }
}
