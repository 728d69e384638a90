import Foundation
import KindlingManifest
import KindlingMesh
import KindlingNode

/// The trust policy of `restore`, `fetch` and `kindling cargo`: the trust file given (the option, else
/// $KINDLING_TRUST); else, when the store's node is configured with trust roots, the node's current trust document,
/// read from its trust state and checked again here against the roots of node.json; else node.json's trust file.
/// Nil when there is none of these.
func resolveTrustPolicy(_ option: String?, storeRoot: String) throws -> TrustPolicy? {
    if let option { return try loadTrustPolicy(option) }
    if let path = ProcessInfo.processInfo.environment["KINDLING_TRUST"], !path.isEmpty {
        return try loadTrustPolicy(path)
    }
    let settings = try? NodeSettings.load(storeRoot: storeRoot, strict: false)
    if let settings, let roots = try settings.trustRoots() {
        let directory = NodeSettings.trustStateDirectory(storeRoot: storeRoot)
        guard
            let document = try TrustDocumentKeeper.existing(directory: directory)?.verifiedCurrent(
                configuredRoots: roots)
        else {
            throw CommandFailure(
                "the node of \(storeRoot) is configured with trust roots but holds no trust document yet: start it "
                    + "('kindling node') so that it fetches one from its peers, or publish one "
                    + "('kindling trust publish DOC'); or give --trust FILE")
        }
        if document.document.expires <= Date() {
            Terminal.printWarning(
                "the node's trust document version \(document.document.version) expired at "
                    + "\(TrustFile.formatDate(document.document.expires)); using it until the roots sign a fresh one")
        }
        return document.document.policy
    }
    if let path = settings?.trust { return try loadTrustPolicy(path) }
    if FileManager.default.fileExists(atPath: NodeSettings.trustStateDirectory(storeRoot: storeRoot)) {
        throw CommandFailure(
            "the node of \(storeRoot) keeps root-signed trust documents, but its node.json names no roots to check "
                + "them against: put \"roots\" and \"threshold\" in \(storeRoot)/node.json (rather than --root "
                + "flags), or give --trust FILE")
    }
    return nil
}
