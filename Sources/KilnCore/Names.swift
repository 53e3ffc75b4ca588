/// The one pattern every family, variable and label name must match (docs/templates.md).
///
/// Names end up in file names, catalog rows and guest environment variables, so they are
/// restricted up front instead of being escaped at every use.
public enum Names {
    /// Families: `[a-z0-9][a-z0-9-]{0,62}`.
    public static func isValidFamily(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), isLowerAlnum(bytes[0]) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || $0 == UInt8(ascii: "-") }
    }

    /// Variables and environment keys: `[A-Za-z_][A-Za-z0-9_]{0,63}`.
    public static func isValidIdentifier(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...64).contains(bytes.count), !isDigit(bytes[0]) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || isUpper($0) || $0 == UInt8(ascii: "_") }
    }

    /// Label keys: `[a-z0-9][a-z0-9._/-]{0,62}`.
    public static func isValidLabelKey(_ name: String) -> Bool {
        let bytes = Array(name.utf8)
        guard (1...63).contains(bytes.count), isLowerAlnum(bytes[0]) else { return false }
        return bytes.allSatisfy { isLowerAlnum($0) || "._/-".utf8.contains($0) }
    }

    static func isDigit(_ b: UInt8) -> Bool { b >= UInt8(ascii: "0") && b <= UInt8(ascii: "9") }
    static func isUpper(_ b: UInt8) -> Bool { b >= UInt8(ascii: "A") && b <= UInt8(ascii: "Z") }
    static func isLowerAlnum(_ b: UInt8) -> Bool {
        isDigit(b) || (b >= UInt8(ascii: "a") && b <= UInt8(ascii: "z"))
    }
}

/// Quoting for where kiln must build a shell line: the remote command of `ssh`, and the
/// scripts of generated CI jobs.
public enum ShellQuote {
    /// Wraps `value` in single quotes; the only character needing care inside them is `'` itself.
    public static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences(of: "'", with: "'\\''") + "'"
    }

    /// `value` as is when the shell reads it as one literal word, else quoted: for lines people read.
    public static func word(_ value: String) -> String {
        let plain =
            !value.isEmpty && value.utf8.allSatisfy { Names.isLowerAlnum($0) || Names.isUpper($0) || "_./=:@%+,-".utf8.contains($0) }
        return plain ? value : quote(value)
    }

    public static func join(_ argv: [String]) -> String {
        argv.map(quote).joined(separator: " ")
    }
}
