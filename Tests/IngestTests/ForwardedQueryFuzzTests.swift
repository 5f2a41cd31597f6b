import Federation
import FuzzSupport
import Testing

@testable import Ingest

/// `POST /_southbridge/v1/query` bodies the homeserver could send, mutated: every body becomes
/// a query within the documented bounds, or a Matrix error whose message starts with the field.
struct ForwardedQueryFuzzTests {
    static let mutator = Mutator(
        corpus: [
            #"{"destination":"a.example","method":"GET","path":"/_matrix/federation/v1/query/profile","query":{"user_id":"@u:a.example","field":["displayname","avatar_url"]}}"#,
            #"{"destination":"b.example:8448","method":"PUT","path":"/_matrix/federation/v1/send_join/!r:x/$e","body":{"a":[1]},"timeout_ms":120000,"priority":"interactive","ignore_backoff":true}"#,
            #"{"destination":"[2001:db8::1]","method":"POST","path":"/.well-known/matrix/server","timeout_ms":1}"#,
        ].map { Array($0.utf8) },
        tokens: [#""destination""#, #""method""#, #""path""#, #""query""#, #""body""#, #""timeout_ms""#, #""priority""#,
                 #""ignore_backoff""#, #""/_matrix/""#, #""/x?y""#, "120001", "0", "-1", "null", "[]", "{}", #""""#]
            .map { Array($0.utf8) },
        seed: 0x5155_4552)

    static let fields = ["destination", "method", "path", "query", "body", "timeout_ms", "priority", "ignore_backoff"]

    @Test("refusals of large values quote them shortened", arguments: ["timeout_ms", "priority", "query", "body", "path"])
    func largeValues(_ field: String) {
        let large = #"[{"x":""# + String(repeating: "y", count: 10_000) + #""}]"#
        var fields = [("destination", #""a.example""#), ("method", #""GET""#), ("path", #""/_matrix/x""#)]
        if let index = fields.firstIndex(where: { $0.0 == field }) {
            fields[index].1 = large
        } else {
            fields.append((field, large))
        }
        let body = "{" + fields.map { "\"\($0.0)\":\($0.1)" }.joined(separator: ",") + "}"
        #expect {
            _ = try ForwardedQuery.parse(Array(body.utf8))
        } throws: { error in
            guard let error = error as? IngestError else { return false }
            return error.error.hasPrefix(field) && error.error.utf8.count <= 300
        }
    }

    @Test("3,000 mutated query bodies give a bounded query or a refusal naming the field")
    func mutatedQueries() {
        for input in Self.mutator.cases(3000) + Self.mutator.truncations().map({ Mutator.Case(index: 0, bytes: $0) }) {
            do {
                let query = try ForwardedQuery.parse(input.bytes)
                #expect((try? ServerName(query.destination)) != nil, "\(input)")
                #expect(["GET", "PUT", "POST", "DELETE"].contains(query.method), "\(input)")
                #expect(query.path.hasPrefix("/_matrix/") || query.path.hasPrefix("/.well-known/"), "\(input)")
                #expect((1...ForwardedQuery.maxTimeoutMS).contains(query.timeoutMS), "\(input)")
                if query.method == "PUT" || query.method == "POST" { #expect(query.body != nil, "\(input)") }
            } catch {
                #expect(error.status == 400 && ["M_NOT_JSON", "M_BAD_JSON"].contains(error.errcode), "\(input): \(error)")
                let namesAField = error.error.hasPrefix("request body: ") || error.error.contains(": unknown field (expected ")
                    || Self.fields.contains { error.error.hasPrefix($0 + ":") || error.error.hasPrefix($0 + ".") || error.error.hasPrefix($0 + "[") }
                #expect(namesAField, "\(input): \(error)")
                #expect(error.error.utf8.count <= 1000 && !error.error.contains(where: \.isNewline), "\(input): \(error)")
            }
        }
    }
}
