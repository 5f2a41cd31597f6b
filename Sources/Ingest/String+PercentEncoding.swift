import Federation

extension String {
    /// `%XX` escapes decoded (and `+` left alone, as in paths); a `%` not followed by two hex
    /// digits is kept as it is.
    var removingPercentEncoding: String {
        guard contains("%") else { return self }
        let input = Array(utf8)
        var bytes: [UInt8] = []
        bytes.reserveCapacity(input.count)
        var index = 0
        while index < input.count {
            if input[index] == UInt8(ascii: "%"), index + 2 < input.count,
               let high = input[index + 1].hexDigitValue, let low = input[index + 2].hexDigitValue {
                bytes.append(high << 4 | low)
                index += 3
            } else {
                bytes.append(input[index])
                index += 1
            }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}
