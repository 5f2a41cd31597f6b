/// Polls `condition` until it holds or five seconds have passed: for what the pool finishes
/// on its own after a call returns (a closed connection gives its socket back once the close
/// is done).
func eventually(_ condition: () async -> Bool) async throws -> Bool {
    let deadline = ContinuousClock.now + .seconds(5)
    while ContinuousClock.now < deadline {
        if await condition() { return true }
        try await Task.sleep(for: .milliseconds(20))
    }
    return await condition()
}
