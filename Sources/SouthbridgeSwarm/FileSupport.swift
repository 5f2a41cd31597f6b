import COpenSSL
import Glibc

/// A fresh directory under `/tmp`, removed with everything in it by `remove()`.
public struct TemporaryDirectory: Sendable {
    public let path: String

    public init(prefix: String) throws {
        var template = Array("/tmp/\(prefix)-XXXXXX".utf8CString)
        // mkdtemp fills in the template and returns a pointer into it, so the path is read while
        // the buffer is still pinned, not after `&template`'s temporary pointer has gone.
        let created = template.withUnsafeMutableBufferPointer { buffer in
            mkdtemp(buffer.baseAddress!).map { String(cString: $0) }
        }
        guard let created else {
            throw FileSupportError("cannot create a temporary directory: \(String(cString: strerror(errno)))")
        }
        path = created
    }

    public func remove() {
        removeTree(path)
    }
}

public struct FileSupportError: Error, Sendable, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Writes `text` to `path`, replacing it, with the given mode.
public func writeFile(_ path: String, _ text: String, mode: mode_t = 0o600) throws {
    let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode)
    guard fd >= 0 else { throw FileSupportError("cannot write \(path): \(String(cString: strerror(errno)))") }
    defer { close(fd) }
    var bytes = Array(text.utf8)
    var offset = 0
    while offset < bytes.count {
        let written = bytes.withUnsafeMutableBytes { write(fd, $0.baseAddress! + offset, $0.count - offset) }
        guard written > 0 else { throw FileSupportError("cannot write \(path): \(String(cString: strerror(errno)))") }
        offset += written
    }
}

/// The whole text of a file; empty when it cannot be read.
public func readFileText(_ path: String) -> String {
    guard let file = fopen(path, "r") else { return "" }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes.append(contentsOf: buffer[0..<count])
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// Cryptographically random bytes from OpenSSL.
public func randomBytes(_ count: Int) throws -> [UInt8] {
    var bytes = [UInt8](repeating: 0, count: count)
    guard RAND_bytes(&bytes, Int32(count)) == 1 else { throw FileSupportError("OpenSSL could not produce random bytes") }
    return bytes
}

/// Resident memory of a process, from `/proc/<pid>/status`.
public enum ProcessMemory {
    /// Resident now (`VmRSS`), in KiB; `pid` nil means this process.
    public static func currentKiB(pid: pid_t? = nil) -> Int { field("VmRSS:", pid: pid) }

    /// The most ever resident (`VmHWM`), in KiB; `pid` nil means this process.
    public static func peakKiB(pid: pid_t? = nil) -> Int { field("VmHWM:", pid: pid) }

    private static func field(_ name: String, pid: pid_t?) -> Int {
        guard let file = fopen(pid.map { "/proc/\($0)/status" } ?? "/proc/self/status", "r") else { return 0 }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 256)
        while fgets(&line, Int32(line.count), file) != nil {
            let text = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
            if text.hasPrefix(name) {
                return Int(text.dropFirst(name.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first ?? "") ?? 0
            }
        }
        return 0
    }
}

private func removeTree(_ path: String) {
    var info = stat()
    guard lstat(path, &info) == 0 else { return }
    if (info.st_mode & S_IFMT) == S_IFDIR {
        if let directory = opendir(path) {
            while let entry = readdir(directory) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { raw in
                    String(cString: raw.bindMemory(to: CChar.self).baseAddress!)
                }
                if name != "." && name != ".." { removeTree(path + "/" + name) }
            }
            closedir(directory)
        }
        rmdir(path)
    } else {
        unlink(path)
    }
}
