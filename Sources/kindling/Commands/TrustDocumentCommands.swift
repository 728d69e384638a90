import ArgumentParser
import Foundation
import KindlingCrypto
import KindlingManifest
import KindlingSystem

// `kindling trust init | edit | sign | show`: the root-signed trust document (Specs/trust.md, "Trust documents").
// The roots' holders edit the JSON file, review it, and sign it one after another, each on their own machine.

extension TrustCommand {
    struct Init: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "init",
            abstract: "Write version 1 of a trust document, unsigned (never over an existing file).")

        @Option(name: .long, help: "Where to write the document.") var out: String
        @Option(name: .long, parsing: .singleValue, help: "A root public key (ed25519:<hex>). Repeatable.")
        var root: [String] = []
        @Option(name: .long, help: "How many distinct roots must sign each version.") var threshold: Int
        @Option(name: .long, help: "How long it holds: 90d, 12h, 30m or seconds.") var expires = "90d"

        func run() async throws {
            try await reportingErrors {
                let roots = try TrustRoots(keys: try parseKeys(root, option: "--root"), threshold: threshold)
                let expiry = Date().addingTimeInterval(try parseDuration(expires, option: "--expires"))
                let document = TrustDocument(version: 1, expires: expiry, roots: roots)
                try document.validate()
                try writeNew(SignedTrustDocument(document: document), to: out)
                print(
                    "wrote version 1 of \(out) (\(roots.summary), expires \(TrustFile.formatDate(expiry)), unsigned); "
                        + "add keys with 'kindling trust edit', then sign with 'kindling trust sign'")
            }
        }
    }

    struct Edit: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Change a trust document: bumps its version by one and drops its signatures.")

        @Argument(help: "The trust document.") var document: String
        @Option(name: .long, help: "Trust a publisher key: NAME=ed25519:<hex> (with --repos).") var addKey: String?
        @Option(
            name: .long, parsing: .singleValue,
            help: "Repositories the added key may sign for: a glob ('*' within a segment, '**' across). Repeatable.")
        var repos: [String] = []
        @Option(name: .long, help: "Revoke the key with this name: every manifest it signed is refused.")
        var revoke: [String] = []
        @Option(
            name: .long,
            help: ArgumentHelp(
                "Retire the key with this name: manifests it signed until --at (default now) stay usable, later "
                    + "ones are refused."))
        var retire: [String] = []
        @Option(name: .long, help: "When --retire takes effect: an ISO 8601 time like 2026-01-31T00:00:00Z.")
        var at: String?
        @Option(name: .long, help: "Withdraw a manifest id (64 hex digits): no node may use it any more.")
        var withdraw: [String] = []
        @Option(name: .long, help: "Expire this long from now: 90d, 12h, 30m or seconds.") var expires: String?
        @Option(name: .long, help: "New root keys, comma-separated (a rotation; with --threshold).") var setRoots:
            String?
        @Option(name: .long, help: "The roots' threshold (with --set-roots, or alone for the current roots).")
        var threshold: Int?

        func validate() throws {
            guard
                addKey != nil || !revoke.isEmpty || !retire.isEmpty || !withdraw.isEmpty || expires != nil
                    || setRoots != nil || threshold != nil
            else {
                throw ValidationError(
                    "nothing to change: give --add-key, --revoke, --retire, --withdraw, --expires, --set-roots or "
                        + "--threshold")
            }
            if at != nil && retire.isEmpty { throw ValidationError("--at goes with --retire") }
            if addKey != nil && repos.isEmpty {
                // A key trusted for every repository is a choice made on purpose, never a default.
                throw ValidationError(
                    "give --repos GLOB with --add-key: the repositories the key may sign for (for example "
                        + "'rust-lang/*'; '**' trusts it for every repository)")
            }
            if addKey == nil && !repos.isEmpty { throw ValidationError("--repos goes with --add-key") }
            if setRoots != nil && threshold == nil {
                throw ValidationError("give --threshold with --set-roots: how many of the new roots must sign")
            }
        }

        func run() async throws {
            try await reportingErrors {
                let signed = try readDocument(document)
                var content = signed.document
                var changes: [String] = []
                if let addKey { changes.append(try add(addKey, to: &content)) }
                for name in revoke {
                    guard let index = content.keys.firstIndex(where: { $0.name == name }) else {
                        throw CommandFailure(
                            "\(document) has no key named '\(name)' (see 'kindling trust show \(document)')")
                    }
                    content.keys[index].revoked = true
                    changes.append("revoked '\(name)'")
                }
                if !retire.isEmpty {
                    // Whole seconds: the document's encoding keeps no finer instants.
                    let until = TrustDocument.wholeSeconds(try at.map { try parseTime($0, option: "--at") } ?? Date())
                    for name in retire {
                        guard let index = content.keys.firstIndex(where: { $0.name == name }) else {
                            throw CommandFailure(
                                "\(document) has no key named '\(name)' (see 'kindling trust show \(document)')")
                        }
                        content.keys[index].validUntil = until
                        changes.append("retired '\(name)' from \(TrustFile.formatDate(until))")
                    }
                }
                for text in withdraw {
                    guard let id = Digest(hex: text.trimmingCharacters(in: .whitespaces)) else {
                        throw ValidationError("--withdraw '\(text)' is not a manifest id (64 hex digits)")
                    }
                    content.withdrawn.insert(id)
                    changes.append("withdrew \(id.short)")
                }
                if let expires {
                    content.expires = Date().addingTimeInterval(try parseDuration(expires, option: "--expires"))
                    changes.append("expires \(TrustFile.formatDate(TrustDocument.wholeSeconds(content.expires)))")
                }
                if setRoots != nil || threshold != nil {
                    let keys = try setRoots.map { text in
                        try parseKeys(text.split(separator: ",").map(String.init), option: "--set-roots")
                    }
                    content.roots = try TrustRoots(
                        keys: keys ?? content.roots.keys, threshold: threshold ?? content.roots.threshold)
                    changes.append("roots \(content.roots.summary)")
                }
                guard content.version < TrustDocument.maximumVersion else {
                    throw CommandFailure("\(document) is at the highest version; start a new document")
                }
                content.version += 1
                try content.validate()
                try replace(SignedTrustDocument(document: content), at: document)
                let note = signed.signatures.isEmpty ? "" : " (its \(signed.signatures.count) signatures dropped)"
                print(
                    "\(document) is now version \(content.version), unsigned\(note): "
                        + changes.joined(separator: ", "))
            }
        }

        private func add(_ text: String, to content: inout TrustDocument) throws -> String {
            guard let equals = text.firstIndex(of: "=") else {
                throw ValidationError("--add-key '\(text)' is not NAME=ed25519:<hex>")
            }
            let name = String(text[..<equals])
            let key = try PublicKey(text: String(text[text.index(after: equals)...]))
            guard !name.isEmpty else { throw ValidationError("--add-key '\(text)' has an empty name") }
            if content.keys.contains(where: { $0.name == name || $0.publicKey == key }) {
                throw CommandFailure(
                    "\(document) already has a key named '\(name)' or the key \(key.text); pick another name, or "
                        + "revoke the old entry")
            }
            let globs = repos.flatMap { $0.split(separator: ",").map(String.init) }
            content.keys.append(
                TrustedKey(name: name, publicKey: key, repositories: globs.map(RepositoryGlob.init)))
            return "added '\(name)' for \(globs.joined(separator: ","))"
        }
    }

    struct Sign: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add one root's signature to a trust document (once per key; signing again changes nothing).")

        @Argument(help: "The trust document.") var document: String
        @Option(name: .long, help: "The root's secret key file (mode 0600).") var rootKey: String
        @Option(name: .long, help: "The previous version, when this one changes the roots (a rotation).")
        var previous: String?

        func run() async throws {
            try await reportingErrors {
                let signed = try readDocument(document)
                let previousRoots = try previous.map { try readDocument($0).document.roots }
                let key = try SecretKeyFile.load(path: rootKey)
                let ownRoot = signed.document.roots.keys.contains(key.publicKey)
                guard ownRoot || previousRoots?.keys.contains(key.publicKey) == true else {
                    let previousNote = previous.map { " nor of \($0)" } ?? ""
                    throw CommandFailure(
                        "\(rootKey) holds \(key.publicKey.text), which is not a root of \(document)\(previousNote) "
                            + "(roots: \(signed.document.roots.keys.map(\.text).joined(separator: ", "))); sign "
                            + "with a root's key")
                }
                let result = signed.signed(with: key)
                if result == signed {
                    print(
                        "\(document) version \(signed.document.version) already has a signature by "
                            + key.publicKey.text)
                    return
                }
                try replace(result, at: document)
                let signers = result.validSigners(among: result.document.roots).count
                print(
                    "signed version \(result.document.version) of \(document) with \(key.publicKey.text): "
                        + "\(signers) of \(result.document.roots.threshold) required signatures of its roots")
            }
        }
    }

    struct Show: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Print a trust document and say whether it is valid (exit 0) or why not (exit 1).")

        @Argument(help: "The trust document.") var document: String
        @Option(name: .long, help: "The version before it: also check it as the next document after that one.")
        var previous: String?
        @Option(name: .long, parsing: .singleValue, help: "Check it under these roots too (with --threshold).")
        var root: [String] = []
        @Option(name: .long, help: "The threshold of --root.") var threshold: Int?

        func validate() throws {
            if !root.isEmpty && threshold == nil { throw ValidationError("give --threshold with --root") }
            if root.isEmpty && threshold != nil { throw ValidationError("--threshold goes with --root") }
        }

        func run() async throws {
            try await reportingErrors {
                let now = Date()
                let signed = try readDocument(document)
                print(describe(signed, now: now), terminator: "")
                let governing =
                    try root.isEmpty
                    ? nil : TrustRoots(keys: try parseKeys(root, option: "--root"), threshold: threshold ?? 0)
                let before = try previous.map(readDocument)
                try check(signed, previous: before, roots: governing, now: now)
            }
        }

        /// Throws the first reason it is not valid: under its own roots, at `now`, and as the successor of
        /// `previous` or a first document under `roots` (TrustUpdate's rules).
        private func check(
            _ signed: SignedTrustDocument, previous: SignedTrustDocument?, roots: TrustRoots?, now: Date
        ) throws {
            let content = signed.document
            try signed.requireThreshold(of: content.roots, as: .candidate)
            guard now < content.expires else {
                throw TrustDocumentError.expired(version: content.version, expires: content.expires, now: now)
            }
            var checked = ["its roots (\(content.roots.summary))"]
            if let previous {
                try expectAccepted(
                    TrustUpdate.evaluate(
                        candidate: signed, current: previous, configuredRoots: previous.document.roots, now: now),
                    after: "version \(previous.document.version) of \(self.previous ?? "")")
                checked.append("version \(previous.document.version)'s roots (\(previous.document.roots.summary))")
            }
            if let roots {
                try expectAccepted(
                    TrustUpdate.evaluate(candidate: signed, current: nil, configuredRoots: roots, now: now),
                    after: "the given roots", configured: true)
                checked.append("the given roots (\(roots.summary))")
            }
            print("valid under \(checked.joined(separator: " and "))")
        }

        private func expectAccepted(
            _ outcome: TrustUpdate.Outcome, after what: String, configured: Bool = false
        ) throws {
            switch outcome {
            case .accepted: return
            case .alreadyCurrent:
                throw CommandFailure("it is the same version as \(what): nothing new to publish")
            case .needsIntermediate(let version) where configured:
                throw CommandFailure(
                    "its roots are not the given roots: a node configured with them accepts it only after the "
                        + "versions that rotate the roots to its own, from version \(version) down to one the given "
                        + "roots govern")
            case .needsIntermediate(let version):
                throw CommandFailure(
                    "its roots differ from \(what), and it is not the next version: publish version \(version) first "
                        + "(a rotation goes one version at a time)")
            }
        }
    }
}

/// What `show` prints: every field, and who signed.
private func describe(_ signed: SignedTrustDocument, now: Date) -> String {
    let content = signed.document
    let roots = content.roots
    let signers = signed.validSigners(among: roots)
    var lines = ["version: \(content.version)"]
    let left = content.expires.timeIntervalSince(now)
    let expiry = left > 0 ? "in \(describeDuration(left))" : "EXPIRED \(describeDuration(-left)) ago"
    lines.append("expires: \(TrustFile.formatDate(content.expires)) (\(expiry))")
    lines.append("roots: \(roots.threshold) of \(roots.keys.count) must sign")
    for key in roots.keys { lines.append("  \(key.text)  \(signers.contains(key) ? "signed" : "not signed")") }
    let active = content.keys.filter { !$0.revoked }
    lines.append("keys:" + (active.isEmpty ? " (none)" : ""))
    for key in active {
        let from = key.validFrom.map(TrustFile.formatDate) ?? "-"
        let until = key.validUntil.map(TrustFile.formatDate) ?? "-"
        lines.append(
            "  \(key.name)  \(key.publicKey.text)  repos=\(key.repositories.map(\.pattern).joined(separator: ","))  "
                + "from \(from) until \(until)")
    }
    let revoked = content.keys.filter(\.revoked)
    lines.append("revoked:" + (revoked.isEmpty ? " (none)" : ""))
    for key in revoked { lines.append("  \(key.name)  \(key.publicKey.text)") }
    lines.append("withdrawn:" + (content.withdrawn.isEmpty ? " (none)" : ""))
    for id in content.withdrawn.sorted() { lines.append("  \(id.hex)") }
    lines.append("signatures:" + (signed.signatures.isEmpty ? " (none)" : ""))
    let input = signed.signingInput
    for signature in signed.signatures {
        let valid = (try? Signature(bytes: signature.signature)).map { signature.key.isValidSignature($0, for: input) }
        let status =
            valid == true
            ? (roots.keys.contains(signature.key) ? "valid, a root" : "valid, not a root of this version")
            : "INVALID (not over this content)"
        lines.append("  \(signature.key.text)  \(status)")
    }
    return lines.joined(separator: "\n") + "\n"
}

private func describeDuration(_ seconds: TimeInterval) -> String {
    if seconds >= 2 * 86400 { return "\(Int(seconds / 86400)) days" }
    if seconds >= 2 * 3600 { return "\(Int(seconds / 3600)) hours" }
    if seconds >= 120 { return "\(Int(seconds / 60)) minutes" }
    return "\(Int(seconds)) seconds"
}

/// `90d`, `12h`, `30m`, `45s` or plain seconds; positive, at most 100 years.
func parseDuration(_ text: String, option: String) throws -> TimeInterval {
    let trimmed = text.trimmingCharacters(in: .whitespaces)
    let units: [Character: Double] = ["d": 86400, "h": 3600, "m": 60, "s": 1]
    var digits = Substring(trimmed)
    var unit = 1.0
    if let last = trimmed.last, let scale = units[last] {
        digits = trimmed.dropLast()
        unit = scale
    }
    guard !digits.isEmpty, digits.allSatisfy(\.isASCIIDigit), let count = Double(digits), count > 0,
        count * unit <= 100 * 365 * 86400
    else {
        throw ValidationError(
            "\(option) '\(text)' is not a duration: give a positive number with d, h, m or s (90d, 12h, 30m) or "
                + "plain seconds, at most 100 years")
    }
    return count * unit
}

extension Character {
    fileprivate var isASCIIDigit: Bool { isASCII && isNumber }
}

private func parseKeys(_ texts: [String], option: String) throws -> [PublicKey] {
    try texts.map { text in
        do { return try PublicKey(text: text) } catch {
            throw ValidationError("\(option) '\(text)' is not a public key (ed25519: and 64 hex digits)")
        }
    }
}

private func readDocument(_ path: String) throws -> SignedTrustDocument {
    let bytes: [UInt8]
    do {
        let file = try PosixFile(opening: path, flags: O_RDONLY)
        bytes = try file.readAll(limit: SignedTrustDocument.maximumEncodedSize + 1)
    } catch {
        throw CommandFailure("cannot read trust document \(path): \(error)")
    }
    do {
        return try SignedTrustDocument.decode(bytes)
    } catch {
        throw CommandFailure("\(path): \(error)")
    }
}

/// Creates `path`; never replaces an existing file.
private func writeNew(_ signed: SignedTrustDocument, to path: String) throws {
    let file: PosixFile
    do {
        file = try PosixFile(opening: path, flags: O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, mode: 0o644)
    } catch {
        if error.errno == .fileExists {
            throw CommandFailure(
                "\(path) already exists; refusing to overwrite it (edit it with 'kindling trust edit')")
        }
        throw CommandFailure("cannot create \(path): \(error)")
    }
    do {
        try file.write(signed.encoded())
        try file.sync()
    } catch {
        try? FileSystem.removeFile(path)
        throw CommandFailure("cannot write \(path): \(error)")
    }
}

/// Replaces `path` atomically (a temporary file beside it, then rename), so a reader never sees half a document.
private func replace(_ signed: SignedTrustDocument, at path: String) throws {
    do {
        try Data(signed.encoded()).write(to: URL(fileURLWithPath: path), options: .atomic)
    } catch {
        throw CommandFailure("cannot write trust document \(path): \(error.localizedDescription)")
    }
}
