import KindlingSystem

extension CargoError {
    /// Runs a file operation of the freshness repair (or its checks) and reports a failure as the repair's, with
    /// the call, the path and what to do (`FileError`'s text).
    static func repair<T>(_ body: () throws(FileError) -> T) throws(CargoError) -> T {
        do throws(FileError) {
            return try body()
        } catch {
            throw .repairFailed(path: error.path, reason: error.description)
        }
    }
}
