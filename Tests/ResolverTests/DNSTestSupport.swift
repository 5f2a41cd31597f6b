import NIOCore
import NIOPosix
import Resolver
import Synchronization

/// A UDP nameserver that receives queries and never answers, recording when each arrived.
final class SilentNameserver: Sendable {
    let address: SocketAddress
    private let channel: any Channel
    private let arrivals: Arrivals

    private final class Arrivals: Sendable {
        let times = Mutex<[ContinuousClock.Instant]>([])
    }

    private final class Recorder: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        let arrivals: Arrivals
        init(arrivals: Arrivals) { self.arrivals = arrivals }
        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            arrivals.times.withLock { $0.append(.now) }
        }
    }

    init() async throws {
        let arrivals = Arrivals()
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { $0.pipeline.addHandler(Recorder(arrivals: arrivals)) }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        address = channel.localAddress!
        self.arrivals = arrivals
    }

    /// When each query arrived, oldest first.
    var arrivalTimes: [ContinuousClock.Instant] { arrivals.times.withLock { $0 } }

    func stop() async {
        try? await channel.close()
    }
}

/// The cache's clock in tests: it only moves when told to.
final class ManualClock: Sendable {
    private let current = Mutex(NIODeadline.uptimeNanoseconds(1_000_000_000_000))

    var now: NIODeadline { current.withLock { $0 } }

    func advance(by amount: TimeAmount) {
        current.withLock { $0 = $0 + amount }
    }
}

/// Always returns 1, which makes every `random(in: 0...n)` draw 0: the first candidate.
struct FirstChoiceGenerator: RandomNumberGenerator {
    mutating func next() -> UInt64 { 1 }
}

/// Builds DNS messages byte by byte, for decoder tests.
struct DNSMessageBuilder {
    var bytes: [UInt8] = []

    mutating func u16(_ value: UInt16) {
        bytes += [UInt8(value >> 8), UInt8(value & 0xFF)]
    }

    mutating func u32(_ value: UInt32) {
        bytes += [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }

    mutating func name(_ text: String) {
        for label in text.split(separator: ".") {
            bytes.append(UInt8(label.utf8.count))
            bytes += Array(label.utf8)
        }
        bytes.append(0)
    }

    mutating func pointer(_ offset: Int) {
        u16(0xC000 | UInt16(offset))
    }

    mutating func header(id: UInt16, flags: UInt16 = 0x8180, questions: UInt16 = 1, answers: UInt16 = 0,
                         authority: UInt16 = 0, additional: UInt16 = 0) {
        u16(id)
        u16(flags)
        u16(questions)
        u16(answers)
        u16(authority)
        u16(additional)
    }

    mutating func question(_ text: String, type: DNSRecordType) {
        name(text)
        u16(type.rawValue)
        u16(1)
    }

    /// A record whose owner is a pointer to `owner` and whose data is `data`.
    mutating func record(owner: Int, type: DNSRecordType, ttl: UInt32, data: [UInt8]) {
        pointer(owner)
        u16(type.rawValue)
        u16(1)
        u32(ttl)
        u16(UInt16(data.count))
        bytes += data
    }
}

func hexBytes(_ text: String) -> [UInt8] {
    var bytes: [UInt8] = []
    var index = text.startIndex
    while index < text.endIndex {
        let next = text.index(index, offsetBy: 2)
        bytes.append(UInt8(text[index..<next], radix: 16)!)
        index = next
    }
    return bytes
}
