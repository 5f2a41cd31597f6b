import COpenSSL

/// The text of the most recent OpenSSL error on this thread, for error descriptions.
func lastOpenSSLErrorMessage() -> String {
    let code = ERR_get_error()
    guard code != 0 else { return "no OpenSSL error recorded" }
    var text = [CChar](repeating: 0, count: 256)
    ERR_error_string_n(code, &text, text.count)
    ERR_clear_error()
    return String(decoding: text.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
}

/// Overwrites secret bytes in a way the optimiser may not remove.
package func wipe(_ bytes: inout [UInt8]) {
    bytes.withUnsafeMutableBytes { OPENSSL_cleanse($0.baseAddress, $0.count) }
}
