import Glibc
import SouthbridgeSwarm

extension TemporaryDirectory {
    init() throws {
        try self.init(prefix: "southbridge-transport")
    }

    /// Writes `text` to a file called `name` inside the directory and returns its path.
    func write(_ text: String, named name: String) throws -> String {
        let filePath = path + "/" + name
        try writeFile(filePath, text)
        return filePath
    }
}

/// A test fixture that could not be set up, with what went wrong.
struct FixtureError: Error, CustomStringConvertible {
    var description: String
    init(_ description: String) { self.description = description }
}
