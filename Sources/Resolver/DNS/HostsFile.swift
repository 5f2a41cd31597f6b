/// The name-to-address table of `/etc/hosts` (hosts(5)), consulted before the DNS for
/// AAAA/A lookups, as the C library does: home users pin names there.
///
/// Addresses come out in canonical text (RFC 5952 for IPv6), IPv6 before IPv4, each family
/// in file order. Lines that do not parse, and addresses with zone indices, are skipped.
struct HostsFile: Sendable {
    private var addressesByName: [String: [String]] = [:]

    init(contents: String) {
        var ipv6: [String: [String]] = [:]
        var ipv4: [String: [String]] = [:]
        for line in contents.split(whereSeparator: \.isNewline) {
            let content = line.prefix { $0 != "#" }
            let fields = content.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, let bytes = IPRange.addressBytes(String(fields[0])) else { continue }
            let address = IPRange.addressDescription(bytes)
            for field in fields.dropFirst() {
                guard let name = try? DNSName.normalized(String(field)) else { continue }
                if bytes.count == 16 {
                    if ipv6[name]?.contains(address) != true { ipv6[name, default: []].append(address) }
                } else {
                    if ipv4[name]?.contains(address) != true { ipv4[name, default: []].append(address) }
                }
            }
        }
        for name in Set(ipv6.keys).union(ipv4.keys) {
            addressesByName[name] = (ipv6[name] ?? []) + (ipv4[name] ?? [])
        }
    }

    /// The file at `path`; a missing or unreadable file is an empty table.
    init(path: String) {
        self.init(contents: SystemTextFile.contents(of: path) ?? "")
    }

    /// The addresses listed for a canonical name, or nil when the file does not list it.
    func addresses(for name: String) -> [String]? {
        addressesByName[name]
    }
}
