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

    var isEmpty: Bool { jobs.isEmpty }

    mutating func append(_ job: WriterJob) {
        if case let .write(bytes) = job.kind {
            queuedBytes += bytes
        }
        jobs.append(job)
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
        return round
    }
}
