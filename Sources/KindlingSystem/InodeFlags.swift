import Glibc

/// A folder's inode flags (`lsattr`, `chattr`): ext4's `T` flag makes the inode allocator spread the folder's
/// subfolders over block groups. Best effort by nature: other file systems lack the flags, and nothing but speed
/// depends on them, so failures are reported as nil or false, not as errors.
public enum InodeFlags {
    /// FS_TOPDIR_FL from <linux/fs.h>.
    public static let topDirectory: CLong = 0x0002_0000

    // FS_IOC_GETFLAGS and FS_IOC_SETFLAGS from <linux/fs.h>; the kernel reads and writes an int.
    private static let getRequest: UInt = 0x8008_6601
    private static let setRequest: UInt = 0x4008_6602

    /// The folder's flags, or nil where the file system has none (or the folder cannot be opened).
    public static func of(directory path: String) -> CLong? {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return nil }
        defer { close(descriptor) }
        var flags: CLong = 0
        return ioctl(descriptor, getRequest, &flags) == 0 ? flags : nil
    }

    /// Adds `flag` to the folder's flags; false where that is not possible.
    @discardableResult
    public static func add(_ flag: CLong, toDirectory path: String) -> Bool {
        let descriptor = open(path, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard descriptor >= 0 else { return false }
        defer { close(descriptor) }
        var flags: CLong = 0
        guard ioctl(descriptor, getRequest, &flags) == 0 else { return false }
        if flags & flag == flag { return true }
        flags |= flag
        return ioctl(descriptor, setRequest, &flags) == 0
    }
}
