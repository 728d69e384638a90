import ArgumentParser
import Foundation
import KindlingManifest
import KindlingNode

extension TrustCommand {
    /// `kindling trust publish DOC`: hands a signed trust document to the local node, which checks it against its
    /// roots, keeps it, applies it at once and gossips it (Specs/control.md, "trust-publish").
    struct PublishDocument: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "publish",
            abstract: "Hand a signed trust document to the local node, which checks, applies and spreads it.",
            discussion: """
                The node must be configured with trust roots (--root and --threshold, or node.json "roots" and \
                "threshold"). Exits non-zero with the node's reason when it refuses the document (an older version, \
                an expired one, too few root signatures).
                """)

        @OptionGroup var storeOptions: StoreOptions
        @Argument(help: "The trust document file (kindling trust init, edit, sign).") var document: String

        func run() async throws {
            try await reportingErrors {
                guard let data = FileManager.default.contents(atPath: document) else {
                    throw CommandFailure("cannot read the trust document \(document)")
                }
                guard data.count <= SignedTrustDocument.maximumEncodedSize else {
                    throw CommandFailure(
                        "\(document) is \(data.count) bytes, more than a trust document may be "
                            + "(\(SignedTrustDocument.maximumEncodedSize))")
                }
                let reply = try ControlClient(storeRoot: storeOptions.path).send(
                    ControlRequest(op: .trustPublish, document: data.base64EncodedString()))
                guard reply.event == .result else {
                    throw CommandFailure(reply.message ?? "the node refused the trust document")
                }
                print(reply.message ?? "published trust document version \(reply.trustVersion ?? 0)")
            }
        }
    }
}
