/// Text a peer (or a snapshot's publisher) chose, made safe for a terminal or a log line: every control character
/// (C0, DEL, C1: this covers ESC and CSI, so no ANSI sequence survives), every bidirectional override or isolate
/// and every line or paragraph separator becomes `\u{XX}`, and a backslash becomes `\\`, so the escaped text reads
/// unambiguously. Longer text is cut at `limit` characters with `…`. Used wherever a peer string is logged or shown
/// (agents, error messages from peers, repository names and commits in `status`).
public func escapedPeerText(_ text: String, limit: Int = 512) -> String {
    var escaped = ""
    var characters = 0
    for scalar in text.unicodeScalars {
        if characters >= limit {
            escaped += "…"
            break
        }
        characters += 1
        switch scalar.value {
        case 0x5C:
            escaped += "\\\\"
        case 0x00...0x1F, 0x7F...0x9F, 0x200E, 0x200F, 0x2028...0x202E, 0x2066...0x2069, 0xFEFF:
            escaped += "\\u{" + String(scalar.value, radix: 16, uppercase: true) + "}"
        default:
            escaped.unicodeScalars.append(scalar)
        }
    }
    return escaped
}
