import Glibc

/// The process's resource limits (getrlimit/setrlimit). Only the calls: how far to raise a limit is the caller's
/// decision (`DescriptorLimit` in KindlingMesh).
public enum ResourceLimits {
    /// A soft and a hard limit; `Int.max` stands for RLIM_INFINITY.
    public struct Limit: Sendable, Equatable {
        public var soft: Int
        public var hard: Int

        public init(soft: Int, hard: Int) {
            self.soft = soft
            self.hard = hard
        }
    }

    /// RLIMIT_NOFILE: how many descriptors this process may hold open.
    public static func openFiles() throws(FileError) -> Limit {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw FileError(call: "getrlimit", "reading the open-files limit (RLIMIT_NOFILE)", "")
        }
        // RLIM_INFINITY is UInt.max: clamped, it reads as Int.max.
        return Limit(soft: Int(clamping: limit.rlim_cur), hard: Int(clamping: limit.rlim_max))
    }

    /// Sets RLIMIT_NOFILE. Only root may raise the hard limit; anyone may raise the soft one up to it.
    public static func setOpenFiles(_ limit: Limit) throws(FileError) {
        // Int.max stands for RLIM_INFINITY (all bits set), which Glibc's macro cannot give Swift.
        func raw(_ value: Int) -> rlim_t { value == .max ? rlim_t.max : rlim_t(clamping: value) }
        var value = rlimit(rlim_cur: raw(limit.soft), rlim_max: raw(limit.hard))
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &value) == 0 else {
            throw FileError(call: "setrlimit", "setting the open-files limit (RLIMIT_NOFILE) to \(limit.soft)", "")
        }
    }

    /// Descriptors open in this process (entries of `/proc/self/fd`, less the one reading it); nil where that
    /// cannot be read (no procfs, or no descriptor left to open it).
    public static func openDescriptorCount() -> Int? {
        guard let directory = opendir("/proc/self/fd") else { return nil }
        defer { closedir(directory) }
        var count = 0
        while let entry = readdir(directory) {
            if entry.pointee.d_name.0 != 0x2E { count += 1 }
        }
        return max(0, count - 1)
    }
}
