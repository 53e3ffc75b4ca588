import Foundation
import KilnCore

/// The Debian mirror kiln bootstraps from when a template names none: `KILN_MIRROR`, else the
/// one the host's apt is configured with. No mirror host is written into kiln itself.
public enum DebianMirror {
    public static func host(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let mirror = environment["KILN_MIRROR"], !mirror.isEmpty { return mirror }
        return fromHostConfiguration(suite: nil)
    }

    /// The mirror the host's apt fetches `suite` from (`bookworm-security` usually lives at
    /// another path than `bookworm`); nil when the host's apt does not list the suite.
    public static func host(forSuite suite: String) -> String? {
        fromHostConfiguration(suite: suite)
    }

    private static func fromHostConfiguration(suite: String?) -> String? {
        let fm = FileManager.default
        let dir = "/etc/apt/sources.list.d"
        let deb822 = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sources") }.sorted()
        for name in deb822 {
            guard let text = try? String(contentsOfFile: dir + "/" + name, encoding: .utf8) else { continue }
            if let uri = fromDeb822(text, suite: suite) { return uri }
        }
        if let text = try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8) {
            return fromOneLine(text, suite: suite)
        }
        return nil
    }

    /// The first `URIs:` of a stanza listing `suite`; with no suite given, of a stanza listing a
    /// release's main suite (one without `-`, as `bookworm` against `bookworm-security`).
    static func fromDeb822(_ text: String, suite: String? = nil) -> String? {
        for fields in Deb822.paragraphs(text) {
            guard let uris = fields["uris"], let suites = fields["suites"] else { continue }
            if (fields["types"] ?? "deb").split(separator: " ").contains("deb"),
                suites.split(separator: " ").contains(where: { suite.map($0.elementsEqual) ?? !$0.contains("-") }),
                let uri = uris.split(separator: " ").first
            {
                return String(uri)
            }
        }
        return nil
    }

    static func fromOneLine(_ text: String, suite: String? = nil) -> String? {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").filter { !$0.hasPrefix("[") && !$0.hasSuffix("]") }
            guard words.count >= 3, words[0] == "deb", suite.map(words[2].elementsEqual) ?? !words[2].contains("-") else { continue }
            return String(words[1])
        }
        return nil
    }
}
