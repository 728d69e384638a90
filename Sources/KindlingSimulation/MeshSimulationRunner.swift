/// Runs a scenario with the real mesh state machines in every node.
public enum MeshSimulationRunner {
    public static func run(_ scenario: Scenario) throws(ScenarioError) -> SimulationReport {
        try scenario.validate()
        var random = SimulationRandom(seed: scenario.randomSeed)
        let topology = Topology(scenario: scenario, random: &random)
        let world = SimulationWorld(scenario: scenario, topology: topology)
        let simulation = MeshSimulation(scenario: scenario, topology: topology, random: random) { index, role, random in
            MeshSimulatedNode(index: index, role: role, world: world, random: random)
        }
        var report = simulation.run()
        report.transfer = world.transfer
        return report
    }
}
