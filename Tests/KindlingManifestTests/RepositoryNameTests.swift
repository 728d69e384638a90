import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingTesting
import Testing

@Suite("Repository names: one validation, an injective folder name")
struct RepositoryNameTests {
    @Test(
        "The manifest's byte rules",
        arguments: [
            ("rust-lang/rust", true), ("a", true), ("A.b_c-d/e.f", true), ("a/b/c", true), (".hidden", true),
            ("", false), ("/a", false), ("a/", false), ("a//b", false), (".", false), ("..", false), ("a/../b", false),
            ("a/./b", false), ("a b", false), ("a%2Fb", false), ("a+b", false), ("a,b", false), ("é", false),
            ("a\u{0}b", false),
            ("a\nb", false), (String(repeating: "x", count: 256), true), (String(repeating: "x", count: 257), false),
        ])
    func rules(name: String, valid: Bool) {
        #expect(((try? RepositoryName(name)) != nil) == valid, "\(name.debugDescription)")
        // The manifest refuses exactly the same names: there is one validation.
        let signed = try? Manifest.sign(
            repository: name, commit: "c", createdAt: 1, cacheKey: [:], body: ManifestBody(entries: []),
            with: signingKey)
        #expect((signed != nil) == valid)
    }

    let signingKey = Fixtures.key(3)

    @Test(
        "Folder names never collide: names that once shared a build root map apart, and each maps back",
        arguments: [
            ["a/b", "a--b", "a-/-b", "a-/b", "a/-b", "a--/b"],
            ["x/y/z", "x/y--z", "x--y/z", "x--y--z", "x/y-z", "x-y/z"],
            ["o/n", "o+n-is-invalid", "o-n", "o/-n", "o-/n", "on", "o.n", "o/.n"],
            ["a.b/c", "a/b.c", "a.b.c", "a_b/c", "a/b_c"],
        ])
    func injective(names: [String]) throws {
        let valid = names.compactMap { try? RepositoryName($0) }
        let folders = valid.map(\.folderName)
        #expect(Set(folders).count == valid.count, "\(zip(valid, folders).map { "\($0) → \($1)" })")
        for (name, folder) in zip(valid, folders) {
            #expect(!folder.contains("/") && folder != "." && folder != "..")
            #expect(RepositoryName(folderName: folder) == name, "\(folder) gives back \(name)")
        }
    }

    @Test("The folder name of a name without '/' is the name; '/' becomes '+'")
    func folderNames() throws {
        #expect(try RepositoryName("kindling").folderName == "kindling")
        #expect(try RepositoryName("rust-lang/rust").folderName == "rust-lang+rust")
        #expect(try RepositoryName("a--b").folderName == "a--b")
        #expect(RepositoryName(folderName: "a++b") == nil, "not the folder name of any name")
        #expect(RepositoryName(folderName: "a+") == nil)
        #expect(RepositoryName(folderName: "a/b") == nil)
    }

    @Test("JSON: a string; decoding applies the rules")
    func codable() throws {
        let name = try RepositoryName("rust-lang/rust")
        let data = try JSONEncoder().encode([name])
        #expect(String(decoding: data, as: UTF8.self) == #"["rust-lang\/rust"]"#)
        #expect(try JSONDecoder().decode([RepositoryName].self, from: data) == [name])
        #expect(throws: (any Error).self) {
            try JSONDecoder().decode([RepositoryName].self, from: Data(#"["../x"]"#.utf8))
        }
        #expect(throws: (any Error).self) { try JSONDecoder().decode([RepositoryName].self, from: Data(#"[""]"#.utf8)) }
    }

    @Test("A header decoded from bytes carries a validated name; a forged name fails to decode")
    func header() throws {
        let manifest = try Manifest.sign(
            repository: try RepositoryName("demo/ws"), commit: "c", createdAt: 1, cacheKey: [:],
            body: ManifestBody(entries: []), with: signingKey)
        let decoded = try ManifestHeader(decoding: manifest.header.encoded())
        #expect(decoded.repositoryName.text == "demo/ws" && decoded.repository == "demo/ws")
        var bytes = manifest.header.encoded()
        // The name's bytes follow the magic, the version and its length: turn "demo/ws" into "demo/.."
        let at = try #require(bytes.indices.first { bytes[$0...].starts(with: Array("demo/ws".utf8)) })
        bytes.replaceSubrange((at + 5)..<(at + 7), with: Array("..".utf8))
        #expect(throws: FormatError.self) { try ManifestHeader(decoding: bytes) }
    }
}
