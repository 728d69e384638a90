public import KindlingWire

/// What one peer holds of one manifest: the wire's `Availability` (one type for the wire, peers and ourselves).
/// Kept as a name for the download's scheduler.
public typealias PeerHoldings = Availability
