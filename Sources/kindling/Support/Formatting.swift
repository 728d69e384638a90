import Foundation

/// Human-readable sizes and times for CLI output.
enum Format {
    static func bytes(_ count: Int) -> String {
        let units = ["B", "KiB", "MiB", "GiB", "TiB"]
        var value = Double(count)
        var unit = 0
        while value >= 1024 && unit < units.count - 1 {
            value /= 1024
            unit += 1
        }
        return unit == 0 ? "\(count) B" : String(format: "%.1f %@", value, units[unit])
    }

    static func seconds(_ value: Double) -> String {
        value < 10 ? String(format: "%.2f s", value) : String(format: "%.1f s", value)
    }

    static func rate(bytes: Int, seconds: Double) -> String {
        guard seconds > 0 else { return "-" }
        return String(format: "%.0f MB/s", Double(bytes) / seconds / 1e6)
    }

    static func json<T: Encodable>(_ value: T) -> String {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        guard let data = try? encoder.encode(value) else { return "{}" }
        return String(decoding: data, as: UTF8.self)
    }

    static func date(nanoseconds: UInt64) -> String {
        Date(timeIntervalSince1970: Double(nanoseconds) / 1e9).formatted(Date.ISO8601FormatStyle())
    }
}

/// Parses sizes like `500M`, `10G`, `1.5GiB`, `123456` (bytes). K/M/G/T are powers of 1024.
enum ByteSize {
    static func parse(_ text: String) -> Int? {
        let trimmed = text.trimmingCharacters(in: .whitespaces)
        let digits = trimmed.prefix(while: { $0.isNumber || $0 == "." })
        guard !digits.isEmpty, let number = Double(digits), number >= 0 else { return nil }
        var suffix = trimmed.dropFirst(digits.count).lowercased()
        for tail in ["ib", "b"] where suffix.hasSuffix(tail) && suffix.count > tail.count - 1 {
            suffix = String(suffix.dropLast(tail.count))
            break
        }
        let multiplier: Double
        switch suffix {
        case "": multiplier = 1
        case "k": multiplier = 1024
        case "m": multiplier = 1024 * 1024
        case "g": multiplier = 1024 * 1024 * 1024
        case "t": multiplier = 1024 * 1024 * 1024 * 1024
        default: return nil
        }
        let value = number * multiplier
        return value < Double(Int.max) ? Int(value) : nil
    }
}
