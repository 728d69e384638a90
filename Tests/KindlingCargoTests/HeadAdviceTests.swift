import KindlingCargo
import Testing

/// The choice `kindling cargo` makes with bors's head records (Specs/freshness.md, "Uses"), as a pure function.
@Suite("Cargo: head records")
struct HeadAdviceTests {
    static let history = ["h0", "h1", "h2", "h3", "h4"]

    static func head(_ commit: String, branch: String = "master", profile: String = "dev") -> HeadPointer {
        HeadPointer(branch: branch, profile: profile, commit: commit, manifest: "m-\(commit)", issued: "T")
    }

    @Test("A head nearer HEAD than the snapshot chosen is reported, with its distance")
    func nearerHead() {
        let newer = HeadAdvice.newer(
            than: 3, history: Self.history, heads: [Self.head("h1")], profile: "dev", branch: "master")
        #expect(newer == HeadAdvice.Newer(head: Self.head("h1"), distance: 1))
        // Nothing chosen at all: any head on the history is news.
        #expect(
            HeadAdvice.newer(than: nil, history: Self.history, heads: [Self.head("h4")], profile: "dev", branch: nil)?
                .distance == 4)
    }

    @Test("No advice for a head at or behind the choice, off HEAD's history, or of another profile")
    func noAdvice() {
        for (heads, chosen) in [
            ([Self.head("h2")], 2), ([Self.head("h3")], 2), ([Self.head("elsewhere")], 4),
            ([Self.head("h0", profile: "release")], 3),
        ] {
            #expect(
                HeadAdvice.newer(than: chosen, history: Self.history, heads: heads, profile: "dev", branch: "master")
                    == nil, "\(heads) chosen \(chosen)")
        }
        // "test" builds into the same folder as "dev": the same snapshot serves both.
        #expect(
            HeadAdvice.newer(
                than: 3, history: Self.history, heads: [Self.head("h0", profile: "test")], profile: "dev", branch: nil)
                != nil)
    }

    @Test("The nearest head wins; at equal distance the branch checked out")
    func nearestFirst() {
        let heads = [
            Self.head("h2", branch: "auto"), Self.head("h1", branch: "auto"), Self.head("h1", branch: "master"),
        ]
        let newer = HeadAdvice.newer(than: 4, history: Self.history, heads: heads, profile: "dev", branch: "master")
        #expect(newer?.head.branch == "master" && newer?.distance == 1)
    }
}
