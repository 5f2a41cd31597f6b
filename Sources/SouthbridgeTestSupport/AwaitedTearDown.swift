/// A test fixture whose teardown a test awaits, so that the next test never starts beside
/// this one's daemon, swarm or event loops.
public protocol AwaitedTearDown: AnyObject {
    func tearDown() async
}

extension AwaitedTearDown {
    /// Runs `body`, then tears the fixture down, awaited, whether `body` returned or threw.
    public func withTearDown<T>(_ body: () async throws -> T) async throws -> T {
        do {
            let result = try await body()
            await tearDown()
            return result
        } catch {
            await tearDown()
            throw error
        }
    }
}
