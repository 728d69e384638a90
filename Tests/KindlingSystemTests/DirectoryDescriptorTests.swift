import Foundation
import KindlingTesting
import Synchronization
import Testing

@testable import KindlingSystem

/// The beneath rules of `DirectoryDescriptor`, both ways it can apply them: openat2 and the component walk (what
/// runs where openat2 is missing). Serialized: the walk is forced through a process-wide switch.
@Suite("Directory descriptor: nothing below is reached through a link or '..'", .serialized)
struct DirectoryDescriptorTests {
    /// A work folder with `inside/` (the directory under test) and `outside/secret`, and links from inside to out.
    static func world() throws -> (TemporaryDirectory, DirectoryDescriptor) {
        let work = TemporaryDirectory("system")
        try FileSystem.createDirectories(work.file("inside/real"))
        try FileSystem.createDirectories(work.file("outside"))
        try Data("secret".utf8).write(to: work.url.appendingPathComponent("outside/secret"))
        try Data("mine".utf8).write(to: work.url.appendingPathComponent("inside/real/file"))
        try FileManager.default.createSymbolicLink(atPath: work.file("inside/up"), withDestinationPath: "../outside")
        try FileManager.default.createSymbolicLink(
            atPath: work.file("inside/secret-link"), withDestinationPath: work.file("outside/secret"))
        return (work, try DirectoryDescriptor(opening: work.file("inside")))
    }

    static func forcingWalk<T>(_ walk: Bool, _ body: () throws -> T) rethrows -> T {
        DirectoryDescriptor.openat2Unavailable.store(walk, ordering: .relaxed)
        defer { DirectoryDescriptor.openat2Unavailable.store(false, ordering: .relaxed) }
        return try body()
    }

    @Test(
        "A symlink on the way is refused with a typed ELOOP naming the path, and nothing is made outside",
        arguments: [false, true])
    func symlinkOnTheWay(walk: Bool) throws {
        let (work, inside) = try Self.world()
        try Self.forcingWalk(walk) {
            let error = try #require(throws: FileError.self) {
                try inside.openDirectory("up/made", create: true)
            }
            #expect(error.errno == .tooManySymbolicLinks || error.errno == .notDirectory, "\(error)")
            #expect(error.path == work.file("inside") + "/up/made")
            #expect(error.call == (walk ? "openat" : "openat2"))
            #expect(error.description.contains("up/made"))
            #expect(!FileManager.default.fileExists(atPath: work.file("outside/made")))
            // A link as the last component: refused too, for files and folders.
            #expect(throws: FileError.self) { try inside.openFile(bytes: Array("secret-link".utf8), flags: O_RDONLY) }
            #expect(throws: FileError.self) { try inside.openDirectory("up") }
            #expect(inside.read("secret-link") == nil)
            #expect(inside.read("up/secret") == nil)
            #expect(inside.names("up").isEmpty)
            #expect(inside.read("real/file") == Array("mine".utf8))
            #expect(inside.kind("up") == S_IFLNK && inside.kind("real") == S_IFDIR && inside.kind("missing") == nil)
        }
    }

    @Test("'..', '.' and empty components are refused before any call", arguments: [false, true])
    func notPlainRelative(walk: Bool) throws {
        let (_, inside) = try Self.world()
        try Self.forcingWalk(walk) {
            for relative in ["..", "real/../..", "./real", "real//file", "/etc", "real/"] {
                let error = try #require(throws: FileError.self) { try inside.openDirectory(relative) }
                #expect(error.errno == .invalidArgument, "\(relative)")
                #expect(inside.read(relative) == nil && inside.status(relative) == nil, "\(relative)")
            }
            #expect(DirectoryDescriptor.components("a/b") == ["a", "b"])
            #expect(DirectoryDescriptor.components("a/../b") == nil && DirectoryDescriptor.components("") == nil)
        }
    }

    @Test("Removing below removes links, not what they point at; read-only folders go too; missing is fine")
    func removeBelow() throws {
        let (work, inside) = try Self.world()
        try FileSystem.createDirectories(work.file("inside/locked/deeper"))
        try Data("x".utf8).write(to: work.url.appendingPathComponent("inside/locked/deeper/f"))
        #expect(chmod(work.file("inside/locked"), 0o500) == 0)
        let error = try #require(throws: FileError.self) { try inside.remove("up/secret") }
        #expect(error.errno == .tooManySymbolicLinks || error.errno == .notDirectory, "\(error)")
        try inside.remove("secret-link")
        try inside.remove("up")
        try inside.remove("locked")
        try inside.remove("missing/entirely")
        #expect(try FileSystem.contents(of: work.file("inside")).sorted() == ["real"])
        #expect(try FileSystem.contents(of: work.file("outside")) == ["secret"])
        try inside.rename(in: "real", from: "file", to: "renamed")
        #expect(inside.names("real") == ["renamed"])
    }

    @Test("A leftover tree is removed only when, once open, it belongs to the given owner")
    func removeTreeChecksOwner() throws {
        let (work, inside) = try Self.world()
        try inside.removeTree(named: Array("real".utf8), owner: ProcessControl.effectiveUserID + 1)
        #expect(FileSystem.exists(work.file("inside/real/file")), "another owner's folder is left alone")
        try inside.removeTree(named: Array("real".utf8), owner: ProcessControl.effectiveUserID)
        #expect(!FileSystem.exists(work.file("inside/real")))
    }

    @Test("A FIFO or a file over the limit is not read (the FIFO does not hang)")
    func readRefusesSpecialAndLarge() throws {
        let (work, inside) = try Self.world()
        #expect(mkfifo(work.file("inside/fifo"), 0o600) == 0)
        #expect(inside.read("fifo") == nil)
        #expect(inside.read("real/file", limit: 3) == nil)
        #expect(inside.read("real/file", limit: 4) == Array("mine".utf8))
    }

    @Test("Identities follow the real folders: a link to a folder has its chain")
    func ancestry() throws {
        let (work, inside) = try Self.world()
        let chain = inside.ancestry()
        let viaLink = try DirectoryDescriptor(opening: work.file("inside/up")).ancestry()
        let outside = try DirectoryDescriptor(opening: work.file("outside")).ancestry()
        #expect(viaLink == outside)
        #expect(chain.dropFirst().first == outside.dropFirst().first, "both sit in the work folder")
        #expect(chain.count >= 2 && chain.first != outside.first)
    }
}
