public import Glibc

/// Calls about processes and users: who this process runs as, whether another process still lives, and replacing
/// this process with a program.
public enum ProcessControl {
    /// The real user id (whom files must belong to, to be trusted as the user's own).
    public static var userID: uid_t { getuid() }

    /// The effective user id (who owns what this process creates).
    public static var effectiveUserID: uid_t { geteuid() }

    /// This process's id.
    public static var processID: pid_t { getpid() }

    /// False only when no process `pid` exists (kill(pid, 0) fails with ESRCH); a process of another user counts
    /// as alive.
    public static func isAlive(_ pid: pid_t) -> Bool {
        kill(pid, 0) == 0 || Errno.current != .noSuchProcess
    }

    /// Replaces this process with `program` (found on PATH) run with `arguments` (argv[0] included) and exactly
    /// `environment`, so that signals and the exit status are the program's own. Returns only by throwing.
    public static func replace(
        with program: String, arguments: [String], environment: [String: String]
    ) throws(FileError) -> Never {
        // The environment is replaced in this process, then exec'd: execvp still finds the program on PATH.
        var current: [String] = []
        var entry = environ
        while let pointer = entry.pointee {
            let text = String(cString: pointer)
            current.append(String(text.prefix(while: { $0 != "=" })))
            entry += 1
        }
        for name in current where environment[name] == nil { unsetenv(name) }
        for (name, value) in environment { setenv(name, value, 1) }
        let argv = arguments.map { strdup($0) } + [nil]
        execvp(program, argv)
        throw FileError(call: "execvp", "running", program)
    }
}
