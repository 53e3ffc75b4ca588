import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The Debian mirror kiln bootstraps from when a template names none: `KILN_MIRROR`, else the
/// one the host's apt is configured with. No mirror host is written into kiln itself.
public enum DebianMirror {
    public static func host(environment: [String: String] = ProcessInfo.processInfo.environment) -> String? {
        if let mirror = environment["KILN_MIRROR"], !mirror.isEmpty { return mirror }
        let fm = FileManager.default
        let dir = "/etc/apt/sources.list.d"
        let deb822 = ((try? fm.contentsOfDirectory(atPath: dir)) ?? []).filter { $0.hasSuffix(".sources") }.sorted()
        for name in deb822 {
            guard let text = try? String(contentsOfFile: dir + "/" + name, encoding: .utf8) else { continue }
            if let uri = fromDeb822(text) { return uri }
        }
        if let text = try? String(contentsOfFile: "/etc/apt/sources.list", encoding: .utf8) {
            return fromOneLine(text)
        }
        return nil
    }

    private static let releaseHashes = Locked<[String: String]>([:])

    /// SHA-256 of the suite's `InRelease` file: it changes whenever the mirror publishes new
    /// packages for the suite, so it stands for "the mirror's state" in build keys.
    public static func releaseHash(mirror: String, suite: String) async throws -> String {
        let address = mirror.hasSuffix("/") ? mirror : mirror + "/"
        let location = address + "dists/\(suite)/InRelease"
        if let known = releaseHashes.value[location] { return known }
        guard let url = URL(string: location) else { throw KilnError(.invalidInput, "invalid mirror URL \(mirror)") }
        let data: Data
        if url.isFileURL {
            data = try Data(contentsOf: url)
        } else {
            let response: URLResponse
            do {
                (data, response) = try await URLSession.shared.data(from: url)
            } catch {
                throw KilnError(.io, "cannot read \(location) to check the mirror's state: \(error.localizedDescription)")
            }
            if let http = response as? HTTPURLResponse, http.statusCode != 200 {
                throw KilnError(.io, "\(location): HTTP \(http.statusCode) (is '\(suite)' a suite of this mirror?)")
            }
        }
        let hash = Hashing.sha256Hex(data)
        releaseHashes.withLock { $0[location] = hash }
        return hash
    }

    /// The first `URIs:` of a stanza whose suites are a release's main suite (not -security).
    static func fromDeb822(_ text: String) -> String? {
        for stanza in text.components(separatedBy: "\n\n") {
            var fields: [String: String] = [:]
            for line in stanza.split(separator: "\n") where !line.hasPrefix("#") {
                guard let colon = line.firstIndex(of: ":") else { continue }
                fields[line[..<colon].lowercased()] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
            }
            guard let uris = fields["uris"], let suites = fields["suites"] else { continue }
            if (fields["types"] ?? "deb").split(separator: " ").contains("deb"),
                suites.split(separator: " ").contains(where: { !$0.contains("-") }),
                let uri = uris.split(separator: " ").first
            {
                return String(uri)
            }
        }
        return nil
    }

    static func fromOneLine(_ text: String) -> String? {
        for line in text.split(separator: "\n") {
            let words = line.split(separator: " ").filter { !$0.hasPrefix("[") && !$0.hasSuffix("]") }
            guard words.count >= 3, words[0] == "deb", !words[2].contains("-") else { continue }
            return String(words[1])
        }
        return nil
    }
}
