import NIOCore
import NIOPosix
import Resolver

/// A UDP nameserver that answers every query with one error code (SERVFAIL, REFUSED...):
/// the broken upstream a test puts behind a forwarding dnsmasq.
final class FailingNameserver: Sendable {
    let address: SocketAddress
    private let channel: any Channel

    private final class Responder: ChannelInboundHandler, Sendable {
        typealias InboundIn = AddressedEnvelope<ByteBuffer>
        typealias OutboundOut = AddressedEnvelope<ByteBuffer>
        let responseCode: DNSResponseCode
        init(responseCode: DNSResponseCode) { self.responseCode = responseCode }

        func channelRead(context: ChannelHandlerContext, data: NIOAny) {
            let query = unwrapInboundIn(data)
            guard let answer = Self.answer(to: Array(query.data.readableBytesView), responseCode: responseCode) else { return }
            context.writeAndFlush(wrapOutboundOut(AddressedEnvelope(remoteAddress: query.remoteAddress, data: ByteBuffer(bytes: answer))),
                                  promise: nil)
        }

        /// The query's ID and question with QR and RA set, the code, and no records; nil for
        /// a datagram too short to hold a question.
        static func answer(to query: [UInt8], responseCode: DNSResponseCode) -> [UInt8]? {
            var end = 12
            while end < query.count, query[end] != 0 { end += 1 + Int(query[end]) }
            end += 5
            guard query.count >= end else { return nil }
            let flags = UInt16(query[2]) << 8 & 0x0100 | 0x8080 | responseCode.rawValue
            return Array(query[0..<2]) + [UInt8(flags >> 8), UInt8(flags & 0xFF), 0, 1, 0, 0, 0, 0, 0, 0] + query[12..<end]
        }
    }

    init(answering responseCode: DNSResponseCode) async throws {
        channel = try await DatagramBootstrap(group: MultiThreadedEventLoopGroup.singleton)
            .channelInitializer { $0.pipeline.addHandler(Responder(responseCode: responseCode)) }
            .bind(host: "127.0.0.1", port: 0)
            .get()
        address = channel.localAddress!
    }

    func stop() async {
        try? await channel.close()
    }
}
