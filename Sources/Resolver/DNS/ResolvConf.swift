import NIOCore

/// The `nameserver` lines of resolv.conf(5), the only part of it southbridge uses.
enum ResolvConf {
    /// The nameservers listed, on port 53, in file order; addresses that do not parse are
    /// skipped. A link-local IPv6 address keeps its `%interface` scope.
    static func nameservers(contents: String) -> [SocketAddress] {
        var servers: [SocketAddress] = []
        for line in contents.split(whereSeparator: \.isNewline) {
            let fields = line.prefix { $0 != "#" && $0 != ";" }.split(whereSeparator: { $0 == " " || $0 == "\t" })
            guard fields.count >= 2, fields[0] == "nameserver",
                  let server = try? SocketAddress(ipAddress: String(fields[1]), port: 53)
            else { continue }
            servers.append(server)
        }
        return servers
    }
}
