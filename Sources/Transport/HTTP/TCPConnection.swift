import NIOCore
import NIOPosix
import Synchronization

/// A TCP connection to a remote server whose TLS handshake has not started yet: the first
/// step of opening an `HTTPClientConnection`. The connection pool holds one while it waits
/// for a handshake slot, so a server that never completes a TCP connect never holds a slot.
public final class TCPConnection: Sendable {
    public let remoteAddress: SocketAddress
    let channel: any Channel

    private init(channel: any Channel, remoteAddress: SocketAddress) {
        self.channel = channel
        self.remoteAddress = remoteAddress
    }

    /// Opens TCP to `address` within `timeout`. Cancelling the calling task abandons the
    /// connect at once and closes its socket.
    ///
    /// The connection lives on the event loop of `eventLoopGroup` that the caller runs on, if
    /// any (see `EventLoopTaskExecutor`), otherwise on the group's next loop.
    public static func open(to address: SocketAddress, on eventLoopGroup: any EventLoopGroup,
                            timeout: TimeAmount) async throws(HTTPClientError) -> TCPConnection {
        let addressDescription = address.hostAndPort
        // The channel exists before its connect completes; kept so a cancellation can close it.
        let opening = OpeningChannel()
        // ClientBootstrap sets TCP_NODELAY by default.
        let connected = ClientBootstrap(group: eventLoopGroup.any())
            .connectTimeout(timeout)
            .channelInitializer { channel in
                opening.channel.withLock { $0 = channel }
                return channel.eventLoop.makeSucceededVoidFuture()
            }
            .connect(to: address)
        do {
            let channel = try await withTaskCancellationHandler {
                try await connected.get()
            } onCancel: {
                opening.channel.withLock { $0 }?.close(promise: nil)
            }
            if Task.isCancelled {
                try? await channel.close()
                throw HTTPClientError.cancelled
            }
            return TCPConnection(channel: channel, remoteAddress: address)
        } catch {
            if Task.isCancelled { throw .cancelled }
            if case ChannelError.connectTimeout = error {
                throw .connectTimeout(address: addressDescription, timeout: timeout)
            }
            throw HTTPClientError(error, address: addressDescription)
        }
    }

    /// Closes the socket, and returns once it is closed.
    public func close() async {
        try? await startClosing().get()
    }

    /// `close()` without a task waiting for it: the future completes once the socket is closed.
    public func startClosing() -> EventLoopFuture<Void> {
        channel.close(promise: nil)
        return channel.closeFuture
    }
}

private final class OpeningChannel: Sendable {
    let channel = Mutex<(any Channel)?>(nil)
}
