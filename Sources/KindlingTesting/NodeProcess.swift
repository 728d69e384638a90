public import Foundation

/// A `kindling node` process on loopback, started and stopped by the test.
public final class NodeProcess {
    public let store: String
    public let process: Process
    public let log: String
    public private(set) var port = 0

    /// `shellPrefix`, when given, runs first in `sh` and the node is exec'd after it (e.g. `ulimit -Sn 1024`).
    public init(
        store: String, arguments: [String], log: String, environment: [String: String] = [:], shellPrefix: String? = nil
    ) throws {
        self.store = store
        self.log = log
        _ = FileManager.default.createFile(atPath: log, contents: nil)
        process = Process()
        let nodeArguments = ["node", "--store", store, "--listen", "127.0.0.1:0"] + arguments
        if let shellPrefix {
            process.executableURL = URL(fileURLWithPath: "/bin/sh")
            process.arguments =
                ["-c", shellPrefix + "; exec \"$0\" \"$@\"", CommandRunner.kindlingPath] + nodeArguments
        } else {
            process.executableURL = URL(fileURLWithPath: CommandRunner.kindlingPath)
            process.arguments = nodeArguments
        }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: log))
        process.standardOutput = handle
        process.standardError = handle
        process.standardInput = FileHandle.nullDevice
        if !environment.isEmpty {
            var merged = ProcessInfo.processInfo.environment
            for (key, value) in environment { merged[key] = value }
            process.environment = merged
        }
        try process.run()
        try waitUntilReady()
    }

    private func waitUntilReady() throws {
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline {
            let status = try CommandRunner.kindling(["status", "--store", store, "--all", "--json"])
            if status.status == 0,
                let object = try? JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any],
                let node = object["node"] as? [String: Any], let port = node["listenPort"] as? Int, port > 0
            {
                self.port = port
                return
            }
            guard process.isRunning else {
                throw NodeProcessError.exited(String(decoding: Fixtures.read(log) ?? [], as: UTF8.self))
            }
            Thread.sleep(forTimeInterval: 0.1)
        }
        throw NodeProcessError.exited("node did not become ready")
    }

    public var address: String { "127.0.0.1:\(port)" }

    public func status() throws -> [String: Any] {
        let result = try CommandRunner.kindling(["status", "--store", store, "--all", "--json"])
        return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
    }

    public func peerCount() throws -> Int {
        ((try status()["node"] as? [String: Any])?["peers"] as? [Any])?.count ?? 0
    }

    public func stop(signal: Int32 = SIGTERM) {
        guard process.isRunning else { return }
        kill(process.processIdentifier, signal)
        process.waitUntilExit()
    }

    deinit {
        stop(signal: SIGKILL)
    }
}

public enum NodeProcessError: Error {
    case exited(String)
}

public func waitFor(_ what: String, timeout: TimeInterval = 20, _ condition: () throws -> Bool) throws {
    let deadline = Date().addingTimeInterval(timeout)
    while Date() < deadline {
        if try condition() { return }
        Thread.sleep(forTimeInterval: 0.1)
    }
    throw NodeProcessError.exited("timeout: \(what)")
}
