import Glibc
import NIOCore
import NIOHTTP1

extension HTTPClientError {
    /// Maps errors surfacing from NIO, OpenSSLHandler and the HTTP codec onto the client's vocabulary.
    init(_ error: any Error, address: String) {
        switch error {
        case let error as HTTPClientError:
            self = error
        case let error as TLSError:
            self = .tls(error)
        case let error as HTTPParserError:
            self = .malformedResponse(address: address, reason: "\(error)")
        case is ByteToMessageDecoderError:
            self = .malformedResponse(address: address, reason: "unexpected bytes after the response")
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
