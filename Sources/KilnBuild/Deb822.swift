import Foundation

/// Debian's control-file format (deb822): apt's `.sources` files, a suite's Release file,
/// dpkg's status database. One reader for them all; a Packages index, tens of megabytes, has
/// its own byte-level parser (``PackageIndex``) for speed.
enum Deb822 {
    /// The paragraphs of `text`, field names lower-cased (they are case-insensitive).
    /// Paragraphs are separated by lines of only blanks; a line starting with a blank
    /// continues the field before it (kept, after a newline, in its value); `#` lines are
    /// comments; CRLF line ends are read as LF.
    static func paragraphs(_ text: String) -> [[String: String]] {
        var result: [[String: String]] = []
        var current: [String: String] = [:]
        var last: String?
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.hasSuffix("\r") ? rawLine.dropLast() : rawLine
            if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
                if !current.isEmpty { result.append(current) }
                (current, last) = ([:], nil)
            } else if line.first == "#" {
                continue
            } else if line.first == " " || line.first == "\t" {
                if let field = last { current[field, default: ""] += "\n" + line.trimmingCharacters(in: .whitespaces) }
            } else if let colon = line.firstIndex(of: ":") {
                let field = line[..<colon].lowercased()
                current[field] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
                last = field
            }
        }
        if !current.isEmpty { result.append(current) }
        return result
    }
}
