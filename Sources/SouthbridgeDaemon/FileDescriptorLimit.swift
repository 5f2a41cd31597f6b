import Glibc

/// The open-file limit the daemon needs: a socket per connection (`limits.max_connections`)
/// plus the outbox, listeners, DNS sockets and event-loop descriptors.
enum FileDescriptorLimit {
    /// Descriptors kept for everything but remote connections.
    static let reserve = 256

    /// Raises the soft `RLIMIT_NOFILE` to what `maxConnections` needs (Debian's soft default is
    /// 1,024, too few for the default 1,024 connections), up to the hard limit. Throws when
    /// the hard limit itself is too low, naming the key to lower or the limit to raise.
    static func ensure(forConnections maxConnections: Int) throws {
        var limit = rlimit()
        guard getrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else { return }
        let needed = rlim_t(maxConnections + reserve)
        guard limit.rlim_cur < needed else { return }
        guard limit.rlim_max >= needed else {
            throw DaemonStartError(
                "limits.max_connections: \(maxConnections) connections need \(needed) open files, but the hard limit "
                    + "is \(limit.rlim_max); lower limits.max_connections or raise LimitNOFILE= in the systemd unit")
        }
        limit.rlim_cur = needed
        guard setrlimit(Int32(RLIMIT_NOFILE.rawValue), &limit) == 0 else {
            throw DaemonStartError("limits.max_connections: cannot raise the open-file limit to \(needed): "
                                   + String(cString: strerror(errno)))
        }
    }
}
