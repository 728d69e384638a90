/// Runs a scenario with the real mesh state machines in every node.
public enum MeshSimulationRunner {
    public static func run(_ scenario: Scenario) throws(SimulationError) -> SimulationReport {
        throw .meshStateMachinesMissing
    }
}

public enum SimulationError: Error, CustomStringConvertible {
    case meshStateMachinesMissing

    public var description: String {
        switch self {
        case .meshStateMachinesMissing:
            return "this build has no mesh state machines (GossipState, PeerBook, ChunkScheduler) to simulate"
        }
    }
}
