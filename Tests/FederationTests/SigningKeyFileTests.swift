#if canImport(Glibc)
import Glibc
#elseif canImport(Musl)
import Musl
#elseif canImport(Darwin)
import Darwin
#endif
import Testing
@testable import Federation

struct SigningKeyFileTests {
    @Test func readsSpecKeyLine() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.write("signing.key", contents: utf8("ed25519 1 \(SpecVectors.seedBase64)\n"))
        let key = try SigningKeyFile.read(path: directory.file("signing.key"))
        #expect(key.keyID == "ed25519:1")
        #expect(key.publicKeyBase64 == SpecVectors.publicKeyBase64)
    }

    @Test(arguments: [
        "\n\n  \ned25519 1 \(SpecVectors.seedBase64)\n",
        "ed25519\t1\t\(SpecVectors.seedBase64)\r\n",
        "  ed25519   1   \(SpecVectors.seedBase64)",
        "ed25519 1 \(SpecVectors.seedBase64)=\n",
        "ed25519 1 \(SpecVectors.seedBase64)\ned25519 a_other Zm9vYmFy\n",
    ])
    func readsFirstKeyOfLenientLayouts(_ contents: String) throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.write("signing.key", contents: utf8(contents))
        let key = try SigningKeyFile.read(path: directory.file("signing.key"))
        #expect(key.keyID == "ed25519:1")
        #expect(key.publicKeyBase64 == SpecVectors.publicKeyBase64)
    }

    @Test func writesAndReadsBack() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("signing.key")
        let key = try SigningKey.generate()
        try SigningKeyFile.write(key, path: path)

        let reread = try SigningKeyFile.read(path: path)
        #expect(reread.keyID == key.keyID)
        #expect(reread.publicKey == key.publicKey)
        #expect(reread.sign(utf8("{}")) == key.sign(utf8("{}")))

        var status = stat()
        #expect(stat(path, &status) == 0)
        #expect(status.st_mode & 0o777 == 0o600)

        let contents = try #require(readFile(path))
        let fields = contents.split(separator: " ")
        #expect(fields.count == 3)
        #expect(fields.first == "ed25519")
        #expect(fields.dropFirst().first.map(String.init) == key.version)
        #expect(contents.hasSuffix("\n"))
        #expect(!contents.contains("="))
    }

    @Test func specKeyWritesTheSpecLine() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("signing.key")
        try SigningKeyFile.write(try SpecVectors.signingKey(), path: path)
        #expect(readFile(path) == "ed25519 1 YJDBA9Xnr2sVqXD9Vj7XVUnmFZcZrlw8Md7kMW+3XA0\n")
        #expect(try SigningKeyFile.read(path: path).publicKeyBase64 == SpecVectors.publicKeyBase64)
    }

    @Test func refusesToOverwrite() throws {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        let path = directory.file("signing.key")
        directory.write("signing.key", contents: utf8("keep me\n"))
        #expect(throws: SigningKeyFileError(path: path, line: nil, reason: .alreadyExists)) {
            try SigningKeyFile.write(try SigningKey.generate(), path: path)
        }
        #expect(readFile(path) == "keep me\n")
    }

    @Test func reportsUnwritableLocation() throws {
        let path = "/nonexistent-southbridge-directory/signing.key"
        #expect(throws: SigningKeyFileError(path: path, line: nil, reason: .cannotCreate(errno: ENOENT))) {
            try SigningKeyFile.write(try SigningKey.generate(), path: path)
        }
    }

    @Test func reportsMissingFile() {
        let path = "/nonexistent-southbridge-directory/signing.key"
        let expected = SigningKeyFileError(path: path, line: nil, reason: .cannotOpen(errno: ENOENT))
        #expect(throws: expected) { try SigningKeyFile.read(path: path) }
        #expect(expected.description == "signing key file \(path): cannot open it: No such file or directory")
    }

    struct BadFile: Sendable, CustomTestStringConvertible {
        let contents: String
        let line: Int?
        let reason: SigningKeyFileError.Reason
        let message: String
        var testDescription: String { String(reflecting: contents) }
    }

    static let badFiles: [BadFile] = [
        BadFile(
            contents: "", line: nil, reason: .noKey,
            message: "it holds no key line; expected 'ed25519 <version> <base64 seed>'"),
        BadFile(
            contents: "\n \n\t\n", line: nil, reason: .noKey,
            message: "it holds no key line; expected 'ed25519 <version> <base64 seed>'"),
        BadFile(
            contents: "rsa 1 \(SpecVectors.seedBase64)\n", line: 1, reason: .unsupportedAlgorithm("rsa"),
            message: #"the algorithm "rsa" is not supported, only "ed25519" is"#),
        BadFile(
            contents: "\n\ned25519 1 not*base64\n", line: 3, reason: .invalidBase64,
            message: "the seed is not valid base64"),
        BadFile(
            contents: "ed25519 1 Zm9vYmFy\n", line: 1, reason: .seedLength(6),
            message: "the seed decodes to 6 bytes, an Ed25519 seed is 32"),
        BadFile(
            contents: "ed25519 bad-version \(SpecVectors.seedBase64)\n", line: 1, reason: .invalidVersion("bad-version"),
            message: #"the key version "bad-version" must match [A-Za-z0-9_]+"#),
        BadFile(
            contents: "\(SpecVectors.seedBase64)\n", line: 1, reason: .wrongFieldCount(1),
            message: "expected 3 fields 'ed25519 <version> <base64 seed>', found 1"),
        BadFile(
            contents: "ed25519 1\n", line: 1, reason: .wrongFieldCount(2),
            message: "expected 3 fields 'ed25519 <version> <base64 seed>', found 2"),
        BadFile(
            contents: "\ned25519 1 1000 \(SpecVectors.publicKeyBase64)\n", line: 2, reason: .wrongFieldCount(4),
            message: "expected 3 fields 'ed25519 <version> <base64 seed>', found 4"),
    ]

    @Test(arguments: badFiles)
    func rejectsBadFile(_ bad: BadFile) {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.write("signing.key", contents: utf8(bad.contents))
        let path = directory.file("signing.key")
        let expected = SigningKeyFileError(path: path, line: bad.line, reason: bad.reason)
        #expect(throws: expected) { try SigningKeyFile.read(path: path) }
        let location = bad.line.map { "\(path) line \($0)" } ?? path
        #expect(expected.description == "signing key file \(location): \(bad.message)")
        #expect(!expected.description.contains(SpecVectors.seedBase64))
    }

    @Test func rejectsOversizedFile() {
        let directory = TemporaryDirectory()
        defer { directory.remove() }
        directory.write("signing.key", contents: [UInt8](repeating: 0x20, count: SigningKeyFile.maximumSize + 1))
        let path = directory.file("signing.key")
        #expect(throws: SigningKeyFileError(path: path, line: nil, reason: .tooLarge)) {
            try SigningKeyFile.read(path: path)
        }
    }

    private func readFile(_ path: String) -> String? {
        guard let file = fopen(path, "r") else { return nil }
        defer { fclose(file) }
        var bytes: [UInt8] = []
        while case let character = fgetc(file), character != EOF {
            bytes.append(UInt8(character))
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
