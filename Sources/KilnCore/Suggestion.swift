/// "Did you mean …?" for a name the user typed: the closest known name, if it is close.
///
/// Hand-written: an edit distance is a dozen lines, and none of the libraries kiln may use
/// offers one.
public enum Suggestion {
    /// The known name with the fewest single-character edits (insert, delete, substitute) from
    /// `name`, when that is at most a third of its length (at least 1); ties go to the first.
    public static func closest(to name: String, in known: some Sequence<String>) -> String? {
        let limit = max(1, name.count / 3)
        var best: (name: String, distance: Int)?
        for candidate in known {
            let distance = editDistance(Array(name.lowercased()), Array(candidate.lowercased()))
            if distance <= limit && distance < (best?.distance ?? .max) { best = (candidate, distance) }
        }
        return best?.name
    }

    /// Levenshtein's distance, one row at a time.
    static func editDistance(_ a: [Character], _ b: [Character]) -> Int {
        guard !a.isEmpty else { return b.count }
        var previous = Array(0...b.count)
        for (i, x) in a.enumerated() {
            var current = [i + 1] + Array(repeating: 0, count: b.count)
            for (j, y) in b.enumerated() {
                current[j + 1] = min(previous[j + 1] + 1, current[j] + 1, previous[j] + (x == y ? 0 : 1))
            }
            previous = current
        }
        return previous[b.count]
    }
}
