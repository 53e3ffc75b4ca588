import Foundation

/// Replaces sensitive values in text with `<sensitive>`: the one rule every output of kiln
/// uses (build logs, the live view, `kiln plan`, catalog rows).
///
/// Longest value first: with `abc` and `abcdef` both sensitive, `abcdef` must become
/// `<sensitive>`, not `<sensitive>def`, whatever order the values were declared in.
public struct Redactor: Sendable {
    public static let mark = "<sensitive>"
    /// Distinct, non-empty, longest first (then in byte order, so the order is fixed).
    public let values: [String]

    public init(_ values: some Sequence<String>) {
        self.values = Set(values.filter { !$0.isEmpty }.flatMap(Self.forms)).sorted {
            $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1
        }
    }

    /// The shapes a secret takes in what kiln shows. Output is read and redacted a line at a
    /// time, so a multi-line secret (a PEM key) arrives as its lines; JSON (the `--json`
    /// events, extra vars) writes it escaped. Lines shorter than ``minimumLine`` are left out:
    /// redacting every `}` or `-----` would make logs unreadable and hide nothing.
    static func forms(_ value: String) -> [String] {
        var forms = [value]
        // With and without `\/`: kiln's encoders differ in whether they escape slashes.
        for formatting in [JSONEncoder.OutputFormatting(), .withoutEscapingSlashes] {
            let encoder = JSONEncoder()
            encoder.outputFormatting = formatting
            if let json = try? encoder.encode(value), let text = String(data: json, encoding: .utf8), text.count > 2 {
                forms.append(String(text.dropFirst().dropLast()))
            }
        }
        if value.contains(where: \.isNewline) {
            let lines = value.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
            forms += lines.filter { $0.count >= minimumLine }
        }
        return forms
    }

    /// The shortest line of a multi-line secret that is redacted on its own.
    static let minimumLine = 8

    public func callAsFunction(_ text: String) -> String {
        var text = text
        for value in values where text.contains(value) {
            text = text.replacingOccurrences(of: value, with: Self.mark)
        }
        return text
    }
}
