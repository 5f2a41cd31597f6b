extension Collection where Element == UInt8 {
    /// Runs `body` over the bytes as one contiguous buffer, copying only when the collection has no
    /// contiguous storage of its own.
    @inlinable
    func withContiguousBytes<Result>(_ body: (UnsafeBufferPointer<UInt8>) -> Result) -> Result {
        if let result = withContiguousStorageIfAvailable(body) {
            return result
        }
        return Array(self).withUnsafeBufferPointer(body)
    }

    /// Like `withContiguousBytes`, but the base address is never nil, which OpenSSL needs even for zero
    /// lengths.
    @inlinable
    func withNonNullBytes<Result>(_ body: (UnsafePointer<UInt8>, Int) -> Result) -> Result {
        withContiguousBytes { buffer in
            if let base = buffer.baseAddress {
                return body(base, buffer.count)
            }
            var placeholder: UInt8 = 0
            return withUnsafePointer(to: &placeholder) { body($0, 0) }
        }
    }
}
