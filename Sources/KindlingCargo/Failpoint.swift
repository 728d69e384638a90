import Foundation

/// Crash points for tests: with `KINDLING_FAILPOINT=<name>` the process exits on the spot there (status 70),
/// without cleaning up, as a kill would. The tests use them to show what a crash at that point leaves behind.
enum Failpoint {
    static func hit(_ name: String) {
        if ProcessInfo.processInfo.environment["KINDLING_FAILPOINT"] == name { _exit(70) }
    }
}
