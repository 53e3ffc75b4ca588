import Foundation
import KilnCore
import KilnModel
import KilnStore

/// `kiln images --filter/--sort-by`: gcloud's habits on the catalog's fields.
///
/// A filter is terms separated by spaces (an `AND` between them is allowed), every one of
/// which must hold: `FIELD=VALUE`, `FIELD!=VALUE`, `FIELD~REGEX`, `FIELD!~REGEX`, with
/// `labels.KEY` for a label. States compare without case (`state=ready`).
struct ImageQuery {
    static let filterFields = ["name", "family", "version", "state", "parent", "tests"]
    static let sortFields = ["name", "family", "version", "state", "parent", "created", "size"]

    enum Operator: String, CaseIterable {
        // Longest first, so `!=` is not read as a field ending in `!`.
        case notMatches = "!~", notEquals = "!=", equals = "=", matches = "~"
    }

    struct Term {
        let field: String
        let op: Operator
        let value: String
        let regex: NSRegularExpression?

        func holds(_ text: String?) -> Bool {
            let text = text ?? ""
            switch op {
            case .equals: return equal(text)
            case .notEquals: return !equal(text)
            case .matches, .notMatches:
                let found = regex?.firstMatch(in: text, range: NSRange(text.startIndex..., in: text)) != nil
                return op == .matches ? found : !found
            }
        }

        private func equal(_ text: String) -> Bool {
            field == "state" || field == "tests" ? text.lowercased() == value.lowercased() : text == value
        }
    }

    let terms: [Term]

    init(filters: [String]) throws {
        var terms: [Term] = []
        for filter in filters {
            for word in filter.split(whereSeparator: \.isWhitespace).map(String.init) where word != "AND" {
                terms.append(try Self.term(word, in: filter))
            }
        }
        self.terms = terms
    }

    private static func term(_ word: String, in filter: String) throws -> Term {
        guard let (range, op) = firstOperator(in: word), range.lowerBound != word.startIndex else {
            throw KilnError(
                .invalidInput,
                "--filter '\(filter)': '\(word)' is not FIELD=VALUE, FIELD!=VALUE, FIELD~REGEX or FIELD!~REGEX")
        }
        let field = String(word[..<range.lowerBound])
        let value = String(word[range.upperBound...])
        let known = filterFields
        guard known.contains(field) || (field.hasPrefix("labels.") && field.count > 7) else {
            let hint = Suggestion.closest(to: field, in: known + ["labels"]).map { " (did you mean '\($0)'?)" } ?? ""
            throw KilnError(
                .invalidInput,
                "--filter '\(filter)': unknown field '\(field)'\(hint); fields: \(known.joined(separator: ", ")), labels.KEY")
        }
        var regex: NSRegularExpression?
        if op == .matches || op == .notMatches {
            do {
                regex = try NSRegularExpression(pattern: value)
            } catch {
                throw KilnError(.invalidInput, "--filter '\(filter)': '\(value)' is not a regular expression")
            }
        }
        return Term(field: field, op: op, value: value, regex: regex)
    }

    private static func firstOperator(in word: String) -> (Range<String.Index>, Operator)? {
        var best: (Range<String.Index>, Operator)?
        for op in Operator.allCases {
            if let range = word.range(of: op.rawValue), best.map({ range.lowerBound < $0.0.lowerBound }) ?? true {
                best = (range, op)
            }
        }
        return best
    }

    func matches(_ image: ImageRecord, testStatus: String?) -> Bool {
        // Labels are JSON in the catalog: decoded once per image, and only when a term needs them.
        var labels: [String: String]?
        return terms.allSatisfy { term in
            switch term.field {
            case "name": return term.holds(image.name)
            case "family": return term.holds(image.family)
            case "version": return term.holds(image.version)
            case "state": return term.holds(image.state.rawValue)
            case "parent": return term.holds(image.parent)
            case "tests": return term.holds(testStatus)
            default:
                if labels == nil { labels = image.labelDictionary }
                return term.holds(labels?[String(term.field.dropFirst("labels.".count))])
            }
        }
    }

    /// `--sort-by FIELD[,FIELD…]`, each ascending unless prefixed with `~` (gcloud's spelling).
    static func sorter(_ spec: String) throws -> (ImageRecord, ImageRecord) -> Bool {
        let keys: [(field: String, descending: Bool)] = try spec.split(separator: ",").map { part in
            let descending = part.hasPrefix("~")
            let field = String(descending ? part.dropFirst() : part)
            guard sortFields.contains(field) else {
                let hint = Suggestion.closest(to: field, in: sortFields).map { " (did you mean '\($0)'?)" } ?? ""
                throw KilnError(
                    .invalidInput,
                    "--sort-by \(spec): unknown field '\(field)'\(hint); fields: \(sortFields.joined(separator: ", ")), each with ~ for descending"
                )
            }
            return (field, descending)
        }
        guard !keys.isEmpty else { throw KilnError(.invalidInput, "--sort-by needs a field: \(sortFields.joined(separator: ", "))") }
        return { a, b in
            for key in keys {
                let order = compare(a, b, by: key.field)
                if order != .orderedSame { return key.descending ? order == .orderedDescending : order == .orderedAscending }
            }
            return false
        }
    }

    private static func compare(_ a: ImageRecord, _ b: ImageRecord, by field: String) -> ComparisonResult {
        func plain<T: Comparable>(_ x: T, _ y: T) -> ComparisonResult {
            x < y ? .orderedAscending : x > y ? .orderedDescending : .orderedSame
        }
        switch field {
        case "created": return plain(a.created, b.created)
        case "size": return plain(a.size, b.size)
        // Versions carry numbers (20261204.2 before 20261204.10).
        case "version": return a.version.compare(b.version, options: .numeric)
        case "family": return plain(a.family, b.family)
        case "state": return plain(a.state.rawValue, b.state.rawValue)
        case "parent": return plain(a.parent ?? "", b.parent ?? "")
        default: return plain(a.name, b.name)
        }
    }
}
