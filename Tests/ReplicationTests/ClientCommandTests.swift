import Testing
@testable import Replication

@Suite struct ClientCommandTests {
    @Test(arguments: [
        ("NAME synapse.app.federation_sender", ClientCommand.name("synapse.app.federation_sender")),
        ("PING 1490197665618", .ping("1490197665618")),
        ("PING 1490197665618\r", .ping("1490197665618")),
        ("AUTH s3cret with spaces", .auth(secret: "s3cret with spaces")),
        ("REPLICATE federation 12", .replicate(.federation, .after(12))),
        ("REPLICATE destinations NOW", .replicate(.destinations, .now)),
        ("REPLICATE ALL 0", .replicate(nil, .after(0))),
        ("REMOTE_SERVER_UP example.org", .remoteServerUp("example.org")),
        ("ERROR something broke", .error("something broke")),
    ])
    func parsesEveryClientCommand(line: String, expected: ClientCommand) throws {
        #expect(try ClientCommand.parse(Array(line.utf8)) == expected)
    }

    @Test(arguments: ["", "   ", "\r", " \t "])
    func blankLinesAreIgnored(line: String) throws {
        #expect(try ClientCommand.parse(Array(line.utf8)) == nil)
    }

    @Test(arguments: [
        ("HELLO there", "unknown command \"HELLO\"; a client sends NAME, PING, AUTH, REPLICATE, REMOTE_SERVER_UP or ERROR"),
        ("RDATA federation 1 {}", "RDATA is sent by the server, not by a client"),
        ("POSITION federation 1", "POSITION is sent by the server, not by a client"),
        ("SERVER x", "SERVER is sent by the server, not by a client"),
        ("NAME", "NAME: expected \"NAME <client name>\", got \"NAME\""),
        ("REPLICATE federation", "REPLICATE: expected \"REPLICATE <stream> <token>\", got \"REPLICATE federation\""),
        ("REPLICATE federation 1 2", "REPLICATE: expected \"REPLICATE <stream> <token>\", got \"REPLICATE federation 1 2\""),
        ("REPLICATE events 1", "REPLICATE: unknown stream \"events\"; the streams are federation, destinations and ALL"),
        ("REPLICATE federation -1", "REPLICATE federation: the token must be NOW or a whole number, got \"-1\""),
        ("REPLICATE federation 99999999999999999999", "REPLICATE federation: the token must be NOW or a whole number, got \"99999999999999999999\""),
        ("REMOTE_SERVER_UP a b", "REMOTE_SERVER_UP: expected \"REMOTE_SERVER_UP <server name>\", got \"REMOTE_SERVER_UP a b\""),
    ])
    func refusesWithAReasonNamingTheProblem(line: String, reason: String) {
        #expect(throws: ReplicationProtocolError.self) { try ClientCommand.parse(Array(line.utf8)) }
        do {
            _ = try ClientCommand.parse(Array(line.utf8))
        } catch {
            #expect(error.description == reason)
        }
    }

    @Test func refusesBytesThatAreNotUTF8() {
        #expect(throws: ReplicationProtocolError.notUTF8) { try ClientCommand.parse([0x50, 0x49, 0xFF, 0xFE]) }
    }
}
