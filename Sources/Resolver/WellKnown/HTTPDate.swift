/// Parses the HTTP date formats a recipient must accept (RFC 9110 §5.6.7): IMF-fixdate
/// (`Sun, 06 Nov 1994 08:49:37 GMT`), the obsolete RFC 850 form
/// (`Sunday, 06-Nov-94 08:49:37 GMT`) and asctime (`Sun Nov  6 08:49:37 1994`).
///
/// The weekday is not checked against the date; all times are UTC.
enum HTTPDate {
    /// Seconds since the Unix epoch, or nil when `text` is in none of the three formats.
    static func secondsSinceEpoch(_ text: String) -> Int64? {
        let tokens = text.split(separator: " ")
        switch tokens.count {
        case 6 where tokens[0].hasSuffix(",") && tokens[5] == "GMT":
            guard tokens[1].utf8.count == 2, tokens[3].utf8.count == 4,
                  let day = Int64(tokens[1]), let month = month(tokens[2]), let year = Int64(tokens[3])
            else { return nil }
            return combine(year: year, month: month, day: day, time: tokens[4])
        case 4 where tokens[0].hasSuffix(",") && tokens[3] == "GMT":
            let date = tokens[1].split(separator: "-", omittingEmptySubsequences: false)
            guard date.count == 3, date[0].utf8.count == 2, date[2].utf8.count == 2,
                  let day = Int64(date[0]), let month = month(date[1]), let shortYear = Int64(date[2])
            else { return nil }
            // RFC 9110 wants "more than 50 years in the future" read as the past; a fixed pivot does that for any date near now.
            let year = shortYear < 70 ? 2000 + shortYear : 1900 + shortYear
            return combine(year: year, month: month, day: day, time: tokens[2])
        case 5:
            guard (1...2).contains(tokens[2].utf8.count), tokens[4].utf8.count == 4,
                  let month = month(tokens[1]), let day = Int64(tokens[2]), let year = Int64(tokens[4])
            else { return nil }
            return combine(year: year, month: month, day: day, time: tokens[3])
        default:
            return nil
        }
    }

    private static let months = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]

    private static func month(_ name: Substring) -> Int64? {
        months.firstIndex(of: String(name)).map { Int64($0 + 1) }
    }

    private static func combine(year: Int64, month: Int64, day: Int64, time: Substring) -> Int64? {
        let parts = time.split(separator: ":", omittingEmptySubsequences: false)
        guard parts.count == 3, parts.allSatisfy({ $0.utf8.count == 2 }),
              let hour = Int64(parts[0]), let minute = Int64(parts[1]), let second = Int64(parts[2]),
              (0..<24).contains(hour), (0..<60).contains(minute), (0...60).contains(second),
              (1...31).contains(day), day <= daysInMonth(year: year, month: month)
        else { return nil }
        return daysFromCivil(year: year, month: month, day: day) * 86_400 + hour * 3600 + minute * 60 + second
    }

    private static func daysInMonth(year: Int64, month: Int64) -> Int64 {
        switch month {
        case 2: (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }

    /// Days from 1970-01-01 in the proleptic Gregorian calendar (Howard Hinnant's `days_from_civil`).
    private static func daysFromCivil(year: Int64, month: Int64, day: Int64) -> Int64 {
        let shiftedYear = month <= 2 ? year - 1 : year
        let era = (shiftedYear >= 0 ? shiftedYear : shiftedYear - 399) / 400
        let yearOfEra = shiftedYear - era * 400
        let dayOfYear = (153 * ((month + 9) % 12) + 2) / 5 + day - 1
        let dayOfEra = yearOfEra * 365 + yearOfEra / 4 - yearOfEra / 100 + dayOfYear
        return era * 146_097 + dayOfEra - 719_468
    }
}
