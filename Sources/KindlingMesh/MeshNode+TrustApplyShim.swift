import KindlingManifest

// TEMPORARY until m3-tpol's MeshNode.applyTrust is merged: removed by that merge.
extension MeshNode {
    func applyTrust(_ policy: TrustPolicy) async {}
}
