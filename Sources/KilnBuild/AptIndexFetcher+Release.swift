import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

// The suite's Release file: fetched (InRelease or Release plus Release.gpg), its signature
// checked with gpgv against the source's keyring, and the index files it lists.
extension AptIndexFetcher {

    struct Release {
        struct File {
            let path: String
            let sha256: String
            let size: Int
        }

        /// SHA-256 of the bytes as fetched.
        let hash: String
        /// Field names lowercased (deb822 field names are case-insensitive).
        let fields: [String: String]
        let files: [String: File]

        /// The best compressed form of `path` that Release lists, in apt's order of preference.
        func index(_ path: String) -> File? {
            for suffix in [".xz", ".gz", ".bz2", ".zst", ""] {
                if let file = files[path + suffix] { return file }
            }
            return nil
        }

        init(hash: String, text: String) {
            self.hash = hash
            // The first paragraph; the SHA256 field's continuation lines list the index files.
            let fields = Deb822.paragraphs(text).first ?? [:]
            var files: [String: File] = [:]
            for line in (fields["sha256"] ?? "").split(separator: "\n") {
                let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                if words.count == 3, let size = Int(words[1]) {
                    files[String(words[2])] = File(path: String(words[2]), sha256: words[0].lowercased(), size: size)
                }
            }
            self.fields = fields
            self.files = files
        }
    }

    static func release(of source: AptSource) async throws -> Release {
        let inRelease = source.base + "/dists/\(source.suite)/InRelease"
        let raw: Data
        let text: String
        let location: String
        switch try await request(inRelease) {
        case .data(let data):
            (raw, location) = (data, inRelease)
            if source.trusted {
                text = signedText(of: data)
            } else {
                text = try await verify(data, from: inRelease, keyring: source.keyring)
            }
        case .missing(let message):
            // apt, too, accepts a plain Release only where no signature is required.
            guard source.trusted else { throw KilnError(.io, message) }
            location = source.base + "/dists/\(source.suite)/Release"
            raw = try await require(location)
            text = String(decoding: raw, as: UTF8.self)
        }
        let release = Release(hash: Hashing.sha256Hex(raw), text: text)
        if let validUntil = release.fields["valid-until"] {
            guard let date = parseReleaseDate(validUntil) else {
                throw KilnError(.io, "\(location): cannot read Valid-Until '\(validUntil)'")
            }
            if date < Date() {
                throw KilnError(
                    .io, "\(location) expired (Valid-Until: \(validUntil)); apt refuses it too: is the mirror still updated?")
            }
        }
        return release
    }

    /// Release dates are RFC 1123 dates in UTC ("Sat, 22 Jun 2024 08:31:39 UTC").
    static func parseReleaseDate(_ text: String) -> Date? {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        for format in ["EEE, d MMM yyyy HH:mm:ss zzz", "EEE, d MMM yyyy HH:mm:ss Z", "d MMM yyyy HH:mm:ss zzz"] {
            formatter.dateFormat = format
            if let date = formatter.date(from: text) { return date }
        }
        return nil
    }

    /// The text of a clearsigned file without checking the signature: only for trusted sources.
    static func signedText(of data: Data) -> String {
        let text = String(decoding: data, as: UTF8.self)
        guard text.hasPrefix("-----BEGIN PGP SIGNED MESSAGE-----") else { return text }
        var lines: [Substring] = []
        var inBody = false
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = line.hasSuffix("\r") ? line.dropLast() : line
            if !inBody {
                // Armor headers ("Hash: SHA512") end at the first empty line.
                if line.isEmpty { inBody = true }
                continue
            }
            if line.hasPrefix("-----BEGIN PGP SIGNATURE-----") { break }
            lines.append(line.hasPrefix("- ") ? line.dropFirst(2) : line)
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// The content gpgv vouches for; the fetched text itself is never read, since unsigned
    /// lines can surround the signed part of a clearsigned file.
    static func verify(_ data: Data, from location: String, keyring: String) async throws -> String {
        guard let keys = FileManager.default.contents(atPath: keyring) else {
            throw KilnError(.io, "signature check of \(location) failed: cannot read keyring \(keyring)")
        }
        guard let gpgv = ProcessRunner.find("gpgv") else {
            throw KilnError(.io, "signature check of \(location) failed: gpgv is not installed (Debian package gpgv)")
        }
        let home = NSTemporaryDirectory() + "kiln-gpgv-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        defer { try? FileManager.default.removeItem(atPath: home) }
        // gpgv takes a name without a slash as relative to its home, and reads only binary
        // keyrings where apt also accepts ASCII-armored ones (signed-by=*.asc): it gets a
        // binary copy of the keys in its home either way.
        let binaryKeyring = home + "/keyring.gpg"
        guard FileManager.default.createFile(atPath: binaryKeyring, contents: try dearmored(keys, keyring)) else {
            throw KilnError(.io, "cannot write \(binaryKeyring) for gpgv")
        }
        let file = home + "/InRelease"
        guard FileManager.default.createFile(atPath: file, contents: data) else {
            throw KilnError(.io, "cannot write \(file) for gpgv")
        }
        // A private home keeps gpgv from reading or creating ~/.gnupg; status lines on stderr
        // tell good signatures from bad ones.
        let result = try await ProcessRunner.run(
            gpgv, ["--homedir", home, "--status-fd", "2", "--keyring", binaryKeyring, "--output", "-", file],
            timeout: .seconds(60), collectLimit: 256 << 20)
        let status = result.stderr.split(separator: "\n").filter { $0.hasPrefix("[GNUPG:] ") }
        // As apt: one good signature suffices (Debian signs with several keys, and a keyring may
        // hold only some of them) unless another one is bad. ERROR covers files gpgv finds
        // malformed, such as two signed messages in one file, whose output would mix them.
        let good = status.contains { $0.hasPrefix("[GNUPG:] GOODSIG ") }
        let bad = status.contains { $0.hasPrefix("[GNUPG:] BADSIG ") || $0.hasPrefix("[GNUPG:] ERROR ") }
        guard good && !bad else {
            var messages = result.stderr.split(separator: "\n").filter { !$0.hasPrefix("[GNUPG:] ") }
                .map { ($0.hasPrefix("gpgv: ") ? $0.dropFirst(6) : $0).trimmingCharacters(in: .whitespaces) }
            if status.contains(where: { $0.hasPrefix("[GNUPG:] NODATA") }) {
                messages.append("no signed data (does the network require authentication?)")
            }
            if messages.isEmpty { messages.append("gpgv exited with \(result.status)") }
            throw KilnError(.io, "signature check of \(location) failed: \(messages.joined(separator: "; "))")
        }
        return result.stdout
    }

    /// The OpenPGP packets of an ASCII-armored keyring (RFC 4880 section 6.2), or the keyring
    /// itself when it is binary already. Each armored block is base64 between its header lines
    /// and its "=CRC" line.
    static func dearmored(_ keys: Data, _ keyring: String) throws -> Data {
        let begin = "-----BEGIN PGP PUBLIC KEY BLOCK-----"
        let text = String(decoding: keys, as: UTF8.self)
        guard text.trimmingCharacters(in: .whitespacesAndNewlines).hasPrefix(begin) else { return keys }
        var packets = Data()
        var body: String?
        var inHeaders = false
        for rawLine in text.split(separator: "\n", omittingEmptySubsequences: false) {
            let line = rawLine.trimmingCharacters(in: .whitespacesAndNewlines)
            if line == begin {
                (body, inHeaders) = ("", true)
            } else if line.hasPrefix("-----END PGP PUBLIC KEY BLOCK-----"), let base64 = body {
                guard let decoded = Data(base64Encoded: base64) else {
                    throw KilnError(.io, "keyring \(keyring): invalid ASCII armor")
                }
                packets.append(decoded)
                body = nil
            } else if body != nil {
                if inHeaders && line.contains(": ") { continue }
                inHeaders = false
                if !line.isEmpty && !line.hasPrefix("=") { body? += line }
            }
        }
        guard !packets.isEmpty else { throw KilnError(.io, "keyring \(keyring): no complete key block") }
        return packets
    }
}
