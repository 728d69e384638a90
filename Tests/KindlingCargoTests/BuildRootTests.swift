import KindlingCargo
import KindlingManifest
import Testing

@Suite("Build roots: one per repository name")
struct BuildRootTests {
    @Test("a/b and a--b (and other near-collisions) get different build roots, all directly under the base")
    func distinct() throws {
        let names = ["a/b", "a--b", "a-/-b", "a/b/c", "a/b--c", "a--b/c", "a--b--c", "ab", "a.b", "a_b"]
        let roots = try names.map { BuildRoot.forRepository(try RepositoryName($0), base: "/base").path }
        #expect(Set(roots).count == names.count, "\(roots)")
        for root in roots {
            #expect(root.hasPrefix("/base/") && !root.dropFirst("/base/".count).contains("/"), "\(root)")
        }
        #expect(BuildRoot.forRepository(try RepositoryName("rust-lang/rust"), base: "/b").path == "/b/rust-lang+rust")
        #expect(BuildRoot.forRepository(try RepositoryName("kindling"), base: "/b").path == "/b/kindling")
    }
}
