@testable import Systemd
import Testing

@Suite("journald field names")
struct JournalLogHandlerTests {
    @Test("metadata keys become journal field names", arguments: [
        ("destination", "DESTINATION"), ("txn_id", "TXN_ID"), ("stream_ordering", "STREAM_ORDERING"),
        ("event-id", "EVENT_ID"), ("_private", "F_PRIVATE"), ("2fa", "F2FA"),
    ])
    func fieldName(key: String, field: String) {
        #expect(JournalLogHandler.fieldName(key) == field)
    }
}
