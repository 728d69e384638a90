import ArgumentParser
import KindlingCrypto
import KindlingManifest

struct Keygen: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Create a publisher signing key.",
        discussion: """
            Writes a new Ed25519 secret key to PATH (mode 0600; an existing file is never overwritten) and prints \
            the public key on one line, for 'kindling trust add --public-key'.
            """)

    @Option(name: .long, help: "Where to write the secret key.")
    var secretKey: String

    func run() async throws {
        try await reportingErrors {
            let key = SigningKey.generate()
            try SecretKeyFile.create(path: secretKey, key: key)
            print(key.publicKey.text)
        }
    }
}
