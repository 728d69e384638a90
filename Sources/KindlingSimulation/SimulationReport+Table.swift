import Foundation

extension SimulationReport {
    /// The report for a person: one figure a line.
    public var table: String {
        func f(_ value: Double, _ digits: Int = 2) -> String {
            let scale = (0..<digits).reduce(1.0) { value, _ in value * 10 }
            return "\((value * scale).rounded() / scale)"
        }
        let rows: [(String, String)] = [
            ("scenario", scenario),
            ("nodes / offices / seed", "\(nodes) / \(offices) / \(randomSeed)"),
            ("virtual seconds / events / wall seconds", "\(f(virtualSeconds, 0)) / \(events) / \(f(wallSeconds))"),
            ("snapshots published (bytes each)", "\(snapshotsPublished) (\(snapshotBytes))"),
            (
                "gossip convergence p50 / p99 / max (s)",
                "\(f(gossipP50Seconds, 3)) / \(f(gossipP99Seconds, 3)) / \(f(gossipMaxSeconds, 3))"
            ),
            ("gossip reached (node, snapshot) pairs", "\(f(gossipReachedFraction * 100, 1)) %"),
            (
                "steady gossip per node (msgs/s, bytes/s)",
                "\(f(gossipMessagesPerNodePerSecond, 3)), \(f(gossipBytesPerNodePerSecond, 1))"
            ),
            (
                "  by type (bytes/s)",
                gossipBytesPerNodePerSecondByType.sorted { $0.value > $1.value }.prefix(5)
                    .map { "\($0.key) \(f($0.value, 1))" }.joined(separator: ", ")
            ),
            ("seed / origin egress (× snapshot bytes)", "\(f(seedEgressRatio)) / \(f(originEgressRatio))"),
            ("office uplink inbound, worst / mean (×)", "\(f(maxOfficeUplinkRatio)) / \(f(meanOfficeUplinkRatio))"),
            (
                "completion p50 / p99 / max (s)",
                "\(f(completionP50Seconds)) / \(f(completionP99Seconds)) / \(f(completionMaxSeconds))"
            ),
            ("completed (node, snapshot) pairs", "\(f(completedFraction * 100, 1)) %"),
            ("churn departures", "\(churnLeaves)"),
            (
                "chunk requests / timeouts / busy / not held / cancels / closed",
                "\(transfer.requests) / \(transfer.timeouts) / \(transfer.busy) / \(transfer.notHeld) / "
                    + "\(transfer.cancels) / \(transfer.closed)"
            ),
            (
                "late replies (bytes) / failed downloads",
                "\(transfer.lateReplies) (\(transfer.lateReplyBytes)) / \(transfer.downloadsFailed)"
            ),
            (
                "office inbound chunk bytes: first / duplicate / late",
                "\(transfer.officeInboundFirstBytes) / \(transfer.officeInboundDuplicateBytes) / "
                    + "\(transfer.officeInboundLateBytes)"
            ),
            (
                "far requests: owned / idle / after failures / alone",
                "\(transfer.farOwned) / \(transfer.farIdle) / \(transfer.farAfterFailures) / \(transfer.farAlone)"
            ),
        ]
        let width = rows.map(\.0.count).max() ?? 0
        return rows.map { $0.0.padding(toLength: width, withPad: " ", startingAt: 0) + "  " + $0.1 }
            .joined(separator: "\n")
    }
}
