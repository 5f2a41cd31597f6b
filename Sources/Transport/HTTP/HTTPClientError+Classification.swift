import Glibc
import NIOCore

extension HTTPClientError {
    /// Maps errors surfacing from NIO and OpenSSLHandler onto the client's vocabulary.
    init(_ error: any Error, address: String) {
        switch error {
        case let error as HTTPClientError:
            self = error
        case let error as TLSError:
            self = .tls(error)
        case let error as IOError:
            switch error.errnoCode {
            case ECONNREFUSED: self = .connectionRefused(address: address)
            case ECONNRESET, EPIPE: self = .connectionReset(address: address)
            default: self = .networkFailure(address: address, reason: error.description)
            }
        case let error as ChannelError:
            switch error {
            case .ioOnClosedChannel, .alreadyClosed, .outputClosed, .eof:
                self = .connectionClosed(address: address)
            default:
                self = .networkFailure(address: address, reason: "\(error)")
            }
        default:
            self = .networkFailure(address: address, reason: "\(error)")
        }
    }
}
