import ArgumentParser

/// `kindling`: signed build state of CI builds, spread peer to peer, restored into developers' target dirs.
@main
struct Kindling: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kindling",
        abstract: "Warm-start cargo builds from signed CI build state, shared peer to peer.",
        version: "0.1.0",
        subcommands: [
            Keygen.self, TrustCommand.self, Publish.self, Restore.self, CargoCommand.self, Node.self, Status.self,
            Peers.self,
            Fetch.self, List.self, ManifestCommand.self, Pin.self, Unpin.self, Verify.self, GarbageCollect.self,
            StoreCommand.self, MeshSecret.self,
        ]
    )
}
