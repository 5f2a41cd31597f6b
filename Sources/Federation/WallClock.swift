import Glibc

/// Milliseconds since the Unix epoch, the unit of every stored timestamp.
public enum WallClock {
    public static func nowMS() -> Int64 {
        var spec = timespec()
        clock_gettime(CLOCK_REALTIME, &spec)
        return Int64(spec.tv_sec) * 1000 + Int64(spec.tv_nsec) / 1_000_000
    }
}
