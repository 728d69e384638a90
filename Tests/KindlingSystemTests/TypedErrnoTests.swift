import Foundation
import KindlingSystem
import KindlingTesting
import Testing

@Suite("Typed errno: each failed call names itself, its path and what to do")
struct TypedErrnoTests {
    @Test("Opening a missing file gives ENOENT naming the path and the call")
    func missingFile() throws {
        let work = TemporaryDirectory("system")
        let path = work.file("nothing-here")
        let error = try #require(throws: FileError.self) { try PosixFile(opening: path, flags: O_RDONLY) }
        #expect(error.errno == .noSuchFile && error.code == ENOENT)
        #expect(error.call == "open" && error.path == path)
        #expect(
            error.description == "opening \(path) failed (open: No such file or directory); check that the path exists")
        let directory = try #require(throws: FileError.self) { try DirectoryDescriptor(opening: path) }
        #expect(directory.errno == .noSuchFile && directory.path == path)
        #expect(directory.description.contains("opening directory \(path)"))
    }

    @Test("A file where a folder must be: ENOTDIR; a file over the limit: EFBIG; the disk full: what to free")
    func otherCodes() throws {
        let work = TemporaryDirectory("system")
        try Data("x".utf8).write(to: work.url.appendingPathComponent("file"))
        let error = try #require(throws: FileError.self) { try FileSystem.createDirectories(work.file("file/sub")) }
        #expect(error.errno == .notDirectory && error.call == "mkdir" && error.path == work.file("file/sub"))
        let large = try #require(throws: FileError.self) {
            try PosixFile(opening: work.file("file"), flags: O_RDONLY).readAll(limit: 0)
        }
        #expect(large.errno == .fileTooLarge)
        let full = FileError(call: "write", "writing", "/x", errno: .noSpace)
        #expect(full.isDiskFull)
        #expect(full.description == "no space left on device while writing /x; free some space and retry")
        #expect(Errno(rawValue: ELOOP).advice?.contains("symlink") == true)
        #expect(Errno(rawValue: EMFILE).advice?.contains("ulimit -n") == true)
    }

    @Test("Removing a tree that is not there is fine; '..' is refused")
    func removeTree() throws {
        let work = TemporaryDirectory("system")
        try FileSystem.removeTree(work.file("missing/deeper"))
        let error = try #require(throws: FileError.self) { try FileSystem.removeTree(work.file("..")) }
        #expect(error.errno == .invalidArgument)
    }

    @Test("An exclusive lock is refused while a shared one is held, and granted once it is dropped")
    func fileLock() throws {
        let work = TemporaryDirectory("system")
        let path = work.file("lock")
        var shared: FileLock? = try FileLock(path: path, mode: .shared)
        #expect(shared != nil)
        #expect(try FileLock(path: path, mode: .exclusive, wait: false) == nil)
        #expect(try FileLock(path: path, mode: .shared, wait: false) != nil)
        shared = nil
        #expect(try FileLock(path: path, mode: .exclusive, wait: false) != nil)
        let error = try #require(throws: FileError.self) {
            try FileLock(path: work.file("no/such/lock"), mode: .shared)
        }
        #expect(error.errno == .noSuchFile && error.call == "open")
    }

    @Test("The open-files limit reads back; a soft limit over the hard one is a typed EINVAL from setrlimit")
    func resourceLimits() throws {
        let limit = try ResourceLimits.openFiles()
        #expect(limit.soft <= limit.hard && limit.soft > 0)
        try ResourceLimits.setOpenFiles(limit)
        #expect(try ResourceLimits.openFiles() == limit)
        if limit.hard < Int.max {
            let error = try #require(throws: FileError.self) {
                try ResourceLimits.setOpenFiles(.init(soft: limit.hard + 1, hard: limit.hard))
            }
            #expect(error.errno == .invalidArgument && error.call == "setrlimit")
            #expect(try ResourceLimits.openFiles() == limit)
        }
        let open = try #require(ResourceLimits.openDescriptorCount())
        let extra = try PosixFile(opening: "/dev/null", flags: O_RDONLY)
        #expect(ResourceLimits.openDescriptorCount() == open + 1)
        withExtendedLifetime(extra) {}
    }

    @Test("A process that ended is not alive; this one is")
    func processes() throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/true")
        try process.run()
        process.waitUntilExit()
        #expect(!ProcessControl.isAlive(process.processIdentifier))
        #expect(ProcessControl.isAlive(ProcessControl.processID))
        #expect(!ProcessControl.isAlive(4_194_305), "above any pid_max")
    }
}
