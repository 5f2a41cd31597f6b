import Federation
import Glibc
import SouthbridgeSwarm
import SouthbridgeTestSupport
import Testing

@Suite("southbridge binary, EDUs end to end")
struct EDUEndToEndTests {
    private static func edusBody(_ edus: [String]) -> [UInt8] {
        Array(#"{"edus":["#.utf8) + Array(edus.joined(separator: ",").utf8) + Array("]}".utf8)
    }

    private static func typing(_ user: String, typing: Bool, to destinations: [String]) -> String {
        #"{"edu_type":"m.typing","content":{"room_id":"!r:origin.southbridge.localhost","user_id":"\#(user)","typing":\#(typing)},"destinations":\#(list(destinations))}"#
    }

    private static func toDevice(_ messageID: String, to destinations: [String]) -> String {
        #"{"edu_type":"m.direct_to_device","content":{"sender":"@a:origin.southbridge.localhost","type":"m.room_key_request","message_id":"\#(messageID)","messages":{}},"destinations":\#(list(destinations))}"#
    }

    private static func list(_ names: [String]) -> String {
        "[" + names.map { "\"\($0)\"" }.joined(separator: ",") + "]"
    }

    /// The to-device message ids `server` received, first arrival of each.
    private static func messageIDs(_ server: SwarmServer) -> [String] {
        var seen = Set<String>()
        return edus(server, type: "m.direct_to_device").compactMap { $0["content"]?["message_id"]?.stringValue }
            .filter { seen.insert($0).inserted }
    }

    private static func edus(_ server: SwarmServer, type: String) -> [JSONValue] {
        server.log().edus.filter { $0["edu_type"]?.stringValue == type }
    }

    @Test("typing is collapsed to the latest state; to-device messages survive a crash and arrive, in order")
    func typingAndToDevice() async throws {
        let fixture = try await DaemonProcess(destinations: 2)
        try await fixture.withTearDown {
            let names = fixture.swarm.serverNames
            let (up, down) = (fixture.swarm.servers[0], fixture.swarm.servers[1])
            down.fail(next: 1_000_000, with: .fail(status: 503))
            try await fixture.start()
            let client = try await fixture.client()
            let typingResponse = try await client.send(txnID: "typing", body: Self.edusBody([
                Self.typing("@a:origin.southbridge.localhost", typing: true, to: [names[0]]),
            ]))
            #expect(typingResponse.status == 200)
            let messages = try await client.send(txnID: "to-device", body: Self.edusBody([
                Self.toDevice("m1", to: names), Self.toDevice("m2", to: names),
            ]))
            #expect(messages.status == 200, "\(String(decoding: messages.body, as: UTF8.self))")
            await client.close()
            #expect(await DaemonProcess.eventually(timeout: .seconds(30)) {
                Self.edus(up, type: "m.typing").count == 1 && Self.messageIDs(up).count == 2
            }, "\(fixture.process?.output() ?? "")")
            #expect(Self.edus(up, type: "m.typing").first?["content"]?["typing"] == .bool(true))

            // The second server was down all along: its to-device messages are on disk.
            fixture.process?.signal(SIGKILL)
            _ = await fixture.process?.waitForExit(timeout: .seconds(10))
            down.fail(next: 0, with: .accept)
            try await fixture.start()
            #expect(await DaemonProcess.eventually(timeout: .seconds(30)) {
                Self.messageIDs(down).count == 2
            }, "\(fixture.process?.output() ?? "")")
            #expect(Self.messageIDs(down) == ["m1", "m2"])
            #expect(Self.edus(down, type: "m.typing").isEmpty)
            // At least once: a crash between the 200 and recording it sends them again (receivers
            // drop repeats by message_id).
            #expect(Self.messageIDs(up) == ["m1", "m2"])
        }
    }
}
