import Foundation
import KindlingCrypto
import KindlingManifest
import Testing

/// Checks Specs/vectors/trust-document-v1.json, made by an independent implementation (tools/spec/trust_vectors.py):
/// canonical bytes, signing input and signatures of each document, the update rules' outcomes, and refusals.
struct MissingVectorField: Error, CustomStringConvertible {
    let description: String
}

/// The vector's field, or an error naming what is missing.
func need<T>(_ value: T?, _ what: String = "a field", sourceLocation: SourceLocation = #_sourceLocation) throws -> T {
    guard let value else { throw MissingVectorField(description: "the vector lacks \(what) (\(sourceLocation))") }
    return value
}

@Suite("Trust document test vectors")
struct TrustVectorTests {
    struct Vector {
        let root: [String: Any]

        init() throws {
            let url = SpecVectorTests.vectorsDirectory.appendingPathComponent("trust-document-v1.json")
            root = try need(try JSONSerialization.jsonObject(with: Data(contentsOf: url)) as? [String: Any])
        }

        func list(_ field: String) throws -> [[String: Any]] {
            try need(root[field] as? [[String: Any]], "\(field)")
        }

        func keys() throws -> [String: SigningKey] {
            let seeds = try need(root["seeds"] as? [String: String])
            let publicKeys = try need(root["publicKeys"] as? [String: String])
            var keys: [String: SigningKey] = [:]
            for (name, seed) in seeds {
                let key = try SigningKey(seed: try Hex.decode(seed))
                #expect(key.publicKey.text == publicKeys[name])
                keys[name] = key
            }
            return keys
        }

        /// Each document, decoded from its file by this implementation.
        func documents() throws -> [String: SignedTrustDocument] {
            var documents: [String: SignedTrustDocument] = [:]
            for entry in try list("documents") {
                let file = try JSONSerialization.data(withJSONObject: try need(entry["file"]))
                documents[try need(entry["name"] as? String)] = try SignedTrustDocument.decode(Array(file))
            }
            return documents
        }
    }

    @Test("Canonical bytes, signing input and signatures match, and each file round-trips")
    func documents() throws {
        let vector = try Vector()
        let keys = try vector.keys()
        let decoded = try vector.documents()
        #expect(decoded.count == 10)
        for entry in try vector.list("documents") {
            let name = try need(entry["name"] as? String)
            let document = try need(decoded[name])
            #expect(Hex.encode(document.signedBytes) == entry["canonicalHex"] as? String, "\(name)")
            #expect(Hex.encode(document.signingInput) == entry["signingInputHex"] as? String, "\(name)")
            let canonical = try Hex.decode(try need(entry["canonicalHex"] as? String))
            #expect(try TrustDocument(canonical: canonical) == document.document, "\(name)")
            #expect(document.document.encoded() == canonical, "\(name)")

            // Signing the content again here gives the same (deterministic Ed25519) signatures, in the same order.
            var resigned = SignedTrustDocument(document: document.document)
            for signer in try need(entry["signers"] as? [String]) {
                let key = try need(keys[signer])
                resigned.signatures.append(
                    TrustSignature(key: key.publicKey, signature: key.sign(resigned.signingInput).bytes))
            }
            #expect(resigned == document, "\(name)")
            #expect(try SignedTrustDocument.decode(document.encoded()) == document, "\(name)")
        }
    }

    @Test("The update rules give the same outcomes as the independent implementation")
    func updates() throws {
        let vector = try Vector()
        let documents = try vector.documents()
        let configured = try need(vector.root["configuredRoots"] as? [String: Any])
        let roots = try TrustRoots(
            keys: try need(configured["keys"] as? [String]).map { try PublicKey(text: $0) },
            threshold: try need(configured["threshold"] as? Int))
        let now = try need(TrustFile.parseDate(try need(vector.root["now"] as? String)))
        let updates = try vector.list("updates")
        #expect(updates.count >= 10)
        for update in updates {
            let candidate = try need(documents[try need(update["candidate"] as? String)])
            let current = try (update["current"] as? String).map { try need(documents[$0]) }
            let outcome: String
            do {
                switch try TrustUpdate.evaluate(
                    candidate: candidate, current: current, configuredRoots: roots, now: now)
                {
                case .accepted(let accepted):
                    #expect(accepted == candidate)
                    outcome = "accepted"
                case .alreadyCurrent: outcome = "alreadyCurrent"
                case .needsIntermediate(let version): outcome = "needsIntermediate \(version)"
                }
            } catch {
                switch error {
                case .rollback: outcome = "rollback"
                case .conflictingVersion: outcome = "conflictingVersion"
                case .expired: outcome = "expired"
                case .belowThreshold: outcome = "belowThreshold"
                case .notConfiguredRoots: outcome = "notConfiguredRoots"
                default: outcome = "\(error)"
                }
            }
            #expect(outcome == update["outcome"] as? String, "\(update)")
        }
    }

    @Test("Every refused input of the vectors is refused")
    func refusals() throws {
        let vector = try Vector()
        let canonical = try vector.list("refusedCanonical")
        #expect(canonical.count >= 10)
        for entry in canonical {
            let bytes = try Hex.decode(try need(entry["hex"] as? String))
            #expect(throws: TrustDocumentError.self, "\(entry["what"] ?? "")") { try TrustDocument(canonical: bytes) }
        }
        let files = try vector.list("refusedFiles")
        #expect(files.count >= 10)
        for entry in files {
            let text = try need(entry["text"] as? String)
            #expect(throws: TrustDocumentError.self, "\(entry["what"] ?? "")") {
                try SignedTrustDocument.decode(Array(text.utf8))
            }
        }
    }
}
