/// The jobs waiting for the writer, and the rule for what one round takes: the group of writes committed in one
/// transaction, and the reads answered after it.
///
/// Writes keep their order: the group is the longest prefix of queued writes within `maxGroupWrites` and
/// `maxGroupBytes` (at least one write, however large). Reads are all taken; none of them waits on a write it could
/// observe, because its caller has not been answered about any write still queued.
struct WriterQueue {
    struct Round {
        var writes: [WriterJob] = []
        var reads: [WriterJob] = []
    }

    private(set) var jobs: [WriterJob] = []
    /// Bytes of the writes waiting, for the `maxQueuedBytes` bound.
    private(set) var queuedBytes = 0
    private(set) var queuedWrites = 0
    private(set) var queuedReads = 0
    /// When the oldest write waiting was queued (monotonic ns); 0 once it has waited for a round already.
    private(set) var oldestWriteQueuedNS: UInt64 = 0

    var isEmpty: Bool { jobs.isEmpty }

    mutating func append(_ job: WriterJob, atMonotonicNS now: UInt64 = 0) {
        switch job.kind {
        case let .write(bytes):
            if queuedWrites == 0 { oldestWriteQueuedNS = now }
            queuedBytes += bytes
            queuedWrites += 1
        case .read:
            queuedReads += 1
        }
        jobs.append(job)
    }

    /// When the next round should start, if later than now: with a commit window, a lone write waits for others to
    /// share its commit until the window has passed since it was queued, the group is full, or a read is waiting.
    func groupDeadlineNS(commitWindowMS: Int, maxGroupWrites: Int) -> UInt64? {
        guard commitWindowMS > 0, queuedReads == 0, queuedWrites > 0, queuedWrites < maxGroupWrites,
              oldestWriteQueuedNS > 0 else { return nil }
        return oldestWriteQueuedNS + UInt64(commitWindowMS) * 1_000_000
    }

    mutating func takeRound(maxGroupWrites: Int, maxGroupBytes: Int) -> Round {
        var round = Round()
        var remaining: [WriterJob] = []
        var groupBytes = 0
        var groupClosed = false
        for job in jobs {
            switch job.kind {
            case .read:
                round.reads.append(job)
            case let .write(bytes):
                let fits = round.writes.count < maxGroupWrites && groupBytes + bytes <= maxGroupBytes
                if !groupClosed && (round.writes.isEmpty || fits) {
                    round.writes.append(job)
                    groupBytes += bytes
                } else {
                    groupClosed = true
                    remaining.append(job)
                }
            }
        }
        jobs = remaining
        queuedBytes -= groupBytes
        queuedWrites -= round.writes.count
        queuedReads = 0
        // Writes left over did not fit the group: they go in the next round without waiting again.
        oldestWriteQueuedNS = 0
        return round
    }
}
