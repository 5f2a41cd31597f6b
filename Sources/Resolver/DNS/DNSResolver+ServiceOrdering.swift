extension DNSResolver {
    /// SRV records in the order to try them (RFC 2782): ascending priority; within one
    /// priority, a weighted random order, drawn one record at a time.
    ///
    /// As the RFC says, each round puts the weight-0 records first and draws a number between
    /// 0 and the sum of the remaining weights; the first record whose running sum reaches it
    /// comes next. So a weight-0 record is picked only on a draw of 0, a chance of
    /// 1 / (sum + 1), and records of weight 0 alone come in the order given. When no weight-0
    /// record remains the draw starts at 1, so that the first record in the list gets no
    /// extra chance and each record's is exactly its share of the remaining weight.
    public static func orderForConnection(_ records: [SRVRecord], using generator: inout some RandomNumberGenerator) -> [SRVRecord] {
        var ordered: [SRVRecord] = []
        ordered.reserveCapacity(records.count)
        for (_, group) in Dictionary(grouping: records, by: \.priority).sorted(by: { $0.key < $1.key }) {
            var remaining = group.filter { $0.weight == 0 } + group.filter { $0.weight != 0 }
            while !remaining.isEmpty {
                let total = remaining.reduce(UInt64(0)) { $0 + UInt64($1.weight) }
                let lowest: UInt64 = remaining[0].weight == 0 ? 0 : 1
                let draw = UInt64.random(in: lowest...total, using: &generator)
                var runningSum: UInt64 = 0
                let index = remaining.firstIndex { record in
                    runningSum += UInt64(record.weight)
                    return runningSum >= draw
                } ?? remaining.startIndex
                ordered.append(remaining.remove(at: index))
            }
        }
        return ordered
    }
}
