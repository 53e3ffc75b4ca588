/// Packer spells long options with one dash (`-only=web`, `-machine-readable`, `-var x=1`).
/// ArgumentParser reads such a word as a group of short flags: `-machine-readable` holds an
/// `h`, so kiln printed its help and exited 0, and a CI job turned green with nothing built.
/// A single-dash word is refused before anything is parsed, naming kiln's option.
enum SingleDashWords {
    /// Packer's flags and what kiln calls them.
    static let packerEquivalents: [String: String] = [
        "machine-readable": "--json", "only": "--only", "except": "--except", "var": "--var", "var-file": "--var-file",
        "force": "--force", "debug": "--debug", "on-error": "--on-error", "parallel-builds": "-j N",
        "color": "NO_COLOR=1 in the environment", "timestamp-ui": "nothing: kiln's log lines carry timestamps",
    ]

    /// The first argument that is a long option written with one dash, as an error message;
    /// nil when there is none. `-h` and `-j N` are kiln's short options (`-j2` is left to the
    /// parser, which names the option); everything after `--` is an operand.
    static func problem(in arguments: [String]) -> String? {
        for argument in arguments {
            if argument == "--" { return nil }
            guard argument.hasPrefix("-"), !argument.hasPrefix("--"), argument.count > 2 else { continue }
            let word = String(argument.dropFirst().prefix { $0 != "=" })
            // A short option with its value attached, or a negative number given as a value.
            if word.first == "j" && word.dropFirst().allSatisfy(\.isNumber) { continue }
            guard word.first?.isLetter == true else { continue }
            let kiln = packerEquivalents[word] ?? "--\(word)"
            return "\(argument): kiln's long options take two dashes (\(kiln)); see kiln --help"
        }
        return nil
    }
}
