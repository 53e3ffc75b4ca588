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
        self.values = Set(values.filter { !$0.isEmpty }).sorted {
            $0.utf8.count != $1.utf8.count ? $0.utf8.count > $1.utf8.count : $0 < $1
        }
    }

    public func callAsFunction(_ text: String) -> String {
        var text = text
        for value in values where text.contains(value) {
            text = text.replacingOccurrences(of: value, with: Self.mark)
        }
        return text
    }
}
