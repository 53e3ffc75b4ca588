import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// One apt repository suite an image installs from.
public struct AptSource: Sendable, Hashable, Codable {
    /// e.g. "http://127.0.0.1:8080/debian" or "file:///path"; trailing slash optional.
    public var mirror: String
    /// e.g. "bookworm", "bookworm-security".
    public var suite: String
    /// e.g. ["main"].
    public var components: [String]
    /// Keyring file for gpgv; nil (and not trusted) means Debian's archive keyring.
    public var signedBy: String?
    /// An unsigned repository (apt's `[trusted=yes]`): no signature check.
    public var trusted: Bool

    /// Where Debian's archive keys live on a Debian host (package debian-archive-keyring).
    public static let debianArchiveKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

    public init(mirror: String, suite: String, components: [String] = ["main"], signedBy: String? = nil, trusted: Bool = false) {
        self.mirror = mirror
        self.suite = suite
        self.components = components
        self.signedBy = signedBy
        self.trusted = trusted
    }

    // Only mirror and suite are required, so a template can say as little as apt's one-line form.
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        mirror = try container.decode(String.self, forKey: .mirror)
        suite = try container.decode(String.self, forKey: .suite)
        components = try container.decodeIfPresent([String].self, forKey: .components) ?? ["main"]
        signedBy = try container.decodeIfPresent(String.self, forKey: .signedBy)
        trusted = try container.decodeIfPresent(Bool.self, forKey: .trusted) ?? false
    }

    /// The keyring gpgv checks InRelease against.
    public var keyring: String { signedBy ?? Self.debianArchiveKeyring }

    /// The mirror without a trailing slash, so paths join with exactly one.
    var base: String {
        var base = mirror
        while base.hasSuffix("/") { base.removeLast() }
        return base
    }
}

/// Debian version ordering.
///
/// Hand-written because no Swift library implements dpkg's algorithm; it follows
/// `verrevcmp` and `dpkg_version_compare` of dpkg's lib/dpkg/version.c step for step.
public enum DebianVersion {
    /// dpkg's ordering (epoch, upstream, revision; '~' sorts before everything, letters before
    /// non-letters): -1, 0 or 1.
    public static func compare(_ a: String, _ b: String) -> Int {
        var a = a
        var b = b
        return a.withUTF8 { a in b.withUTF8 { b in compare(a, b) } }
    }

    static func compare(_ a: UnsafeBufferPointer<UInt8>, _ b: UnsafeBufferPointer<UInt8>) -> Int {
        let left = Parts(a)
        let right = Parts(b)
        if left.epoch != right.epoch { return left.epoch < right.epoch ? -1 : 1 }
        let upstream = verrevcmp(a, left.upstream, b, right.upstream)
        if upstream != 0 { return upstream }
        return verrevcmp(a, left.revision, b, right.revision)
    }

    /// `[epoch:]upstream[-revision]`: the epoch ends at the first colon, the revision starts
    /// after the last hyphen, as dpkg's parseversion splits them.
    private struct Parts {
        var epoch = 0
        var upstream: Range<Int>
        var revision: Range<Int>

        init(_ bytes: UnsafeBufferPointer<UInt8>) {
            var start = 0
            var end = bytes.count
            while start < end, bytes[start] == 0x20 || bytes[start] == 0x09 { start += 1 }
            while end > start, bytes[end - 1] == 0x20 || bytes[end - 1] == 0x09 { end -= 1 }
            if let colon = bytes[start..<end].firstIndex(of: UInt8(ascii: ":")) {
                // dpkg rejects epochs beyond INT_MAX; capping keeps absurd ones from overflowing.
                for digit in bytes[start..<colon] where digit >= 0x30 && digit <= 0x39 {
                    epoch = min(epoch * 10 + Int(digit - 0x30), Int(Int32.max) + 1)
                }
                start = colon + 1
            }
            if let hyphen = bytes[start..<end].lastIndex(of: UInt8(ascii: "-")) {
                upstream = start..<hyphen
                revision = (hyphen + 1)..<end
            } else {
                upstream = start..<end
                revision = end..<end
            }
        }
    }

    private static func isDigit(_ c: UInt8) -> Bool { c >= 0x30 && c <= 0x39 }

    /// dpkg's `order`: digits 0, letters their code, '~' -1, end of string 0, anything else
    /// after all letters.
    private static func order(_ c: UInt8?) -> Int {
        guard let c else { return 0 }
        if isDigit(c) { return 0 }
        if (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) { return Int(c) }
        if c == UInt8(ascii: "~") { return -1 }
        return Int(c) + 256
    }

    private static func verrevcmp(
        _ a: UnsafeBufferPointer<UInt8>, _ ar: Range<Int>, _ b: UnsafeBufferPointer<UInt8>, _ br: Range<Int>
    ) -> Int {
        var i = ar.lowerBound
        var j = br.lowerBound
        let aEnd = ar.upperBound
        let bEnd = br.upperBound
        while i < aEnd || j < bEnd {
            var firstDiff = 0
            while (i < aEnd && !isDigit(a[i])) || (j < bEnd && !isDigit(b[j])) {
                let ac = order(i < aEnd ? a[i] : nil)
                let bc = order(j < bEnd ? b[j] : nil)
                if ac != bc { return ac < bc ? -1 : 1 }
                i += 1
                j += 1
            }
            while i < aEnd && a[i] == UInt8(ascii: "0") { i += 1 }
            while j < bEnd && b[j] == UInt8(ascii: "0") { j += 1 }
            while i < aEnd && j < bEnd && isDigit(a[i]) && isDigit(b[j]) {
                if firstDiff == 0 { firstDiff = Int(a[i]) - Int(b[j]) }
                i += 1
                j += 1
            }
            if i < aEnd && isDigit(a[i]) { return 1 }
            if j < bEnd && isDigit(b[j]) { return -1 }
            if firstDiff != 0 { return firstDiff < 0 ? -1 : 1 }
        }
        return 0
    }
}

/// The newest version of each package in one or more Packages indexes.
public struct PackageIndex: Sendable, Equatable {
    struct Key: Hashable, Sendable {
        let name: String
        let architecture: String
    }

    private(set) var entries: [Key: String] = [:]

    public init() {}

    /// Number of distinct (name, architecture) entries.
    public var count: Int { entries.count }

    /// Newest version of `name` for `architecture`, considering "all" packages too.
    public func newest(_ name: String, architecture: String) -> String? {
        let own = entries[Key(name: name, architecture: architecture)]
        let all = architecture == "all" ? nil : entries[Key(name: name, architecture: "all")]
        guard let own else { return all }
        guard let all else { return own }
        return DebianVersion.compare(all, own) > 0 ? all : own
    }

    /// Keeps the newer version per entry.
    public mutating func merge(_ other: PackageIndex) {
        if entries.isEmpty {
            entries = other.entries
            return
        }
        for (key, version) in other.entries { insert(key, version) }
    }

    mutating func insert(_ key: Key, _ version: String) {
        if let known = entries[key], DebianVersion.compare(version, known) <= 0 { return }
        entries[key] = version
    }

    /// Parses a Packages file (deb822 stanzas: Package, Version, Architecture; other fields
    /// and continuation lines ignored).
    public static func parse(_ data: Data) throws -> PackageIndex {
        try data.withUnsafeBytes { raw in try parse(raw.bindMemory(to: UInt8.self)) }
    }

    // Debian's main index is ~45 MB: lines are found with memchr over the raw bytes and only
    // the three wanted values ever become Strings.
    static func parse(_ bytes: UnsafeBufferPointer<UInt8>) throws -> PackageIndex {
        var index = PackageIndex()
        guard let base = bytes.baseAddress, !bytes.isEmpty else { return index }
        // A Debian stanza averages ~700 bytes; reserving avoids rehashing 16 times on the way up.
        index.entries.reserveCapacity(bytes.count / 600)
        let end = bytes.count
        var position = 0
        var lineNumber = 0
        var stanzaLine = 0
        var package: Range<Int>?
        var version: Range<Int>?
        var architecture: Range<Int>?

        func string(_ range: Range<Int>) -> String {
            String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
        }
        func finishStanza() throws {
            defer { (package, version, architecture) = (nil, nil, nil) }
            guard package != nil || version != nil || architecture != nil else { return }
            guard let package, let version, let architecture else {
                let missing = [("Package", package), ("Version", version), ("Architecture", architecture)]
                    .filter { $0.1 == nil }.map(\.0).joined(separator: ", ")
                throw KilnError(.io, "Packages index line \(stanzaLine): stanza has no \(missing)")
            }
            index.insert(Key(name: string(package), architecture: string(architecture)), string(version))
        }
        func fieldIs(_ start: Int, _ length: Int, _ lowercase: StaticString) -> Bool {
            guard length == lowercase.utf8CodeUnitCount else { return false }
            let wanted = lowercase.utf8Start
            for offset in 0..<length where base[start + offset] | 0x20 != wanted[offset] { return false }
            return true
        }

        while position < end {
            let newline = memchr(base + position, 0x0A, end - position)
            let lineEnd = newline.map { UnsafeRawPointer(base).distance(to: UnsafeRawPointer($0)) } ?? end
            var contentEnd = lineEnd
            if contentEnd > position && base[contentEnd - 1] == 0x0D { contentEnd -= 1 }
            lineNumber += 1
            defer { position = lineEnd + 1 }
            if position == contentEnd {
                try finishStanza()
                continue
            }
            let first = base[position]
            if first == 0x20 || first == 0x09 {
                // deb822 lets a line of only blanks separate stanzas; any other is a continuation.
                if !(position..<contentEnd).contains(where: { base[$0] != 0x20 && base[$0] != 0x09 }) {
                    try finishStanza()
                }
                continue
            }
            if first == UInt8(ascii: "#") { continue }
            if package == nil && version == nil && architecture == nil { stanzaLine = lineNumber }
            guard let colonPointer = memchr(base + position, Int32(UInt8(ascii: ":")), contentEnd - position) else {
                throw KilnError(.io, "Packages index line \(lineNumber): expected 'Field: value', found '\(string(position..<contentEnd))'")
            }
            let colon = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(colonPointer))
            let nameLength = colon - position
            guard nameLength == 7 || nameLength == 12 else { continue }
            var valueStart = colon + 1
            var valueEnd = contentEnd
            while valueStart < valueEnd && (base[valueStart] == 0x20 || base[valueStart] == 0x09) { valueStart += 1 }
            while valueEnd > valueStart && (base[valueEnd - 1] == 0x20 || base[valueEnd - 1] == 0x09) { valueEnd -= 1 }
            let value = valueStart..<valueEnd
            let field: StaticString
            if fieldIs(position, nameLength, "package") {
                field = "Package"
                package = value
            } else if fieldIs(position, nameLength, "version") {
                field = "Version"
                version = value
            } else if fieldIs(position, nameLength, "architecture") {
                field = "Architecture"
                architecture = value
            } else {
                continue
            }
            // dpkg allows no blanks in these values; refusing them keeps the cache's TSV unambiguous.
            if value.isEmpty || value.contains(where: { base[$0] == 0x20 || base[$0] == 0x09 }) {
                throw KilnError(.io, "Packages index line \(lineNumber): invalid \(field) '\(string(value))'")
            }
        }
        try finishStanza()
        return index
    }

    private static let cacheHeader = "kiln-apt-index 1"

    /// `name\tarch\tversion` lines after a header that carries the entry count, so a truncated
    /// file is never taken for a complete index.
    func cacheData() -> Data {
        var bytes: [UInt8] = []
        bytes.reserveCapacity(entries.count * 40 + 64)
        bytes.append(contentsOf: "\(Self.cacheHeader) \(entries.count)\n".utf8)
        for (key, version) in entries {
            bytes.append(contentsOf: key.name.utf8)
            bytes.append(0x09)
            bytes.append(contentsOf: key.architecture.utf8)
            bytes.append(0x09)
            bytes.append(contentsOf: version.utf8)
            bytes.append(0x0A)
        }
        return Data(bytes)
    }

    /// The index `cacheData` wrote, or nil for anything else.
    static func fromCache(_ data: Data) -> PackageIndex? {
        data.withUnsafeBytes { raw -> PackageIndex? in
            let bytes = raw.bindMemory(to: UInt8.self)
            guard let base = bytes.baseAddress,
                let headerEnd = bytes.firstIndex(of: 0x0A)
            else { return nil }
            let header = String(decoding: UnsafeBufferPointer(rebasing: bytes[0..<headerEnd]), as: UTF8.self)
            guard header.hasPrefix(cacheHeader + " "), let expected = Int(header.dropFirst(cacheHeader.count + 1)) else {
                return nil
            }
            var index = PackageIndex()
            index.entries.reserveCapacity(expected)
            var position = headerEnd + 1
            let end = bytes.count
            func string(_ range: Range<Int>) -> String {
                String(decoding: UnsafeBufferPointer(rebasing: bytes[range]), as: UTF8.self)
            }
            while position < end {
                guard let newline = memchr(base + position, 0x0A, end - position) else { return nil }
                let lineEnd = UnsafeRawPointer(base).distance(to: UnsafeRawPointer(newline))
                guard let firstTab = bytes[position..<lineEnd].firstIndex(of: 0x09),
                    let secondTab = bytes[(firstTab + 1)..<lineEnd].firstIndex(of: 0x09)
                else { return nil }
                let key = Key(name: string(position..<firstTab), architecture: string((firstTab + 1)..<secondTab))
                index.entries[key] = string((secondTab + 1)..<lineEnd)
                position = lineEnd + 1
            }
            return index.entries.count == expected ? index : nil
        }
    }
}

public struct FetchedSuite: Sendable {
    public let source: AptSource
    /// SHA-256 (hex) of the Release/InRelease bytes as fetched: "the mirror's state" for build keys.
    public let releaseHash: String
    public let index: PackageIndex
}

/// Reads a suite's package versions the way apt does, without apt: the signed Release file,
/// then each component's Packages index, checked against the hashes Release lists.
public struct AptIndexFetcher: Sendable {
    public let cacheDirectory: String?

    /// cacheDirectory: parsed indexes cached by the SHA-256 of the Packages file named in
    /// Release, so a second check with an unchanged repository downloads only the Release file.
    /// nil: no cache.
    public init(cacheDirectory: String?) {
        self.cacheDirectory = cacheDirectory
    }

    /// Removes cached indexes unused for `age` (a mirror publishes a new index every few days;
    /// the old ones would pile up). Only a cache: what cannot be removed stays.
    public func pruneCache(olderThan age: TimeInterval = 14 * 86_400, now: Date = Date()) {
        guard let cacheDirectory, let names = try? FileManager.default.contentsOfDirectory(atPath: cacheDirectory) else { return }
        for name in names where name.hasSuffix(".tsv") {
            let path = cacheDirectory + "/" + name
            if let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date,
                now.timeIntervalSince(modified) > age
            {
                try? FileManager.default.removeItem(atPath: path)
            }
        }
    }

    /// Fetches and verifies the suite's Release file and the Packages index of each component
    /// for `architecture` (plus binary-all where the repository keeps "all" packages apart).
    public func fetch(_ source: AptSource, architecture: String) async throws -> FetchedSuite {
        let release = try await Self.release(of: source)
        var index = PackageIndex()
        for component in source.components {
            let wanted = "\(component)/binary-\(architecture)/Packages"
            guard let file = release.index(wanted) else {
                var known: [String] = []
                if let architectures = release.fields["architectures"] { known.append("Architectures: \(architectures)") }
                if let components = release.fields["components"] { known.append("Components: \(components)") }
                throw KilnError(
                    .io,
                    "Release of \(source.suite) lists no \(wanted)" + (known.isEmpty ? "" : " (\(known.joined(separator: "; ")))"))
            }
            index.merge(try await packages(file, of: source, release: release))
            // Without this field, apt reads "all" packages from binary-all alone when Release
            // lists that architecture; Debian itself repeats them in every binary-ARCH index.
            if release.fields["no-support-for-architecture-all"] != "Packages",
                release.fields["architectures"]?.split(separator: " ").contains("all") == true,
                let all = release.index("\(component)/binary-all/Packages")
            {
                index.merge(try await packages(all, of: source, release: release))
            }
        }
        return FetchedSuite(source: source, releaseHash: release.hash, index: index)
    }

    /// Only the Release file's hash (signature verified as in `fetch`): what a build key records.
    public func releaseHash(_ source: AptSource) async throws -> String {
        try await Self.release(of: source).hash
    }

    // MARK: Release

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
            var fields: [String: String] = [:]
            var files: [String: File] = [:]
            var current = ""
            for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
                let line = line.hasSuffix("\r") ? line.dropLast() : line
                if line.allSatisfy({ $0 == " " || $0 == "\t" }) {
                    if fields.isEmpty { continue }
                    break
                }
                if line.first == " " || line.first == "\t" {
                    guard current == "sha256" else { continue }
                    let words = line.split(whereSeparator: { $0 == " " || $0 == "\t" })
                    if words.count == 3, let size = Int(words[1]) {
                        files[String(words[2])] = File(path: String(words[2]), sha256: words[0].lowercased(), size: size)
                    }
                    continue
                }
                guard let colon = line.firstIndex(of: ":") else { continue }
                current = line[..<colon].lowercased()
                fields[current] = line[line.index(after: colon)...].trimmingCharacters(in: .whitespaces)
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

    // MARK: Packages

    private func packages(_ file: Release.File, of source: AptSource, release: Release) async throws -> PackageIndex {
        let cacheFile = cacheDirectory.map { "\($0)/\(file.sha256).tsv" }
        if let cacheFile, let data = FileManager.default.contents(atPath: cacheFile),
            let cached = PackageIndex.fromCache(data)
        {
            // Its modification time says when it was last used: pruneCache keeps what is in use.
            utimes(cacheFile, nil)
            return cached
        }
        let directory = source.base + "/dists/\(source.suite)/"
        var location = directory + file.path
        var fetched: Data?
        // By-hash names never change meaning, so a mirror updating between our Release and
        // Packages requests cannot hand us an index that does not match the Release we have.
        if release.fields["acquire-by-hash"]?.lowercased() == "yes" {
            let folder = (file.path as NSString).deletingLastPathComponent
            let byHash = directory + folder + "/by-hash/SHA256/" + file.sha256
            if case .data(let data) = try await Self.request(byHash) { (fetched, location) = (data, byHash) }
        }
        let raw: Data
        if let fetched {
            raw = fetched
        } else {
            raw = try await Self.require(location)
        }
        let hash = Hashing.sha256Hex(raw)
        guard hash == file.sha256 else {
            let sizes = raw.count == file.size ? "" : " (\(raw.count) bytes, Release says \(file.size))"
            throw KilnError(.io, "\(location): SHA-256 is \(hash), Release says \(file.sha256)\(sizes)")
        }
        guard raw.count == file.size else {
            throw KilnError(.io, "\(location): size is \(raw.count) bytes, Release says \(file.size)")
        }
        let text = file.path.hasSuffix("/Packages") ? raw : try Self.decompress(raw, from: location)
        let index: PackageIndex
        do {
            index = try PackageIndex.parse(text)
        } catch let error as KilnError {
            throw KilnError(.io, "\(location): \(error.message)")
        }
        if let cacheDirectory, let cacheFile {
            // Only a cache: a check that cannot save it is still a good check.
            try? Self.writeAtomically(index.cacheData(), to: cacheFile, directory: cacheDirectory)
        }
        return index
    }

    private static func writeAtomically(_ data: Data, to path: String, directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let temporary = "\(directory)/.\(UUID().uuidString).tmp"
        do {
            try data.write(to: URL(fileURLWithPath: temporary))
            try Store.fsync(path: temporary)
            guard rename(temporary, path) == 0 else { throw KilnError(.io, "cannot rename \(temporary) to \(path)") }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    /// Decompresses whatever filter libarchive recognises (xz, gzip, bzip2, zstd).
    static func decompress(_ data: Data, from location: String) throws -> Data {
        guard let archive = archive_read_new() else { throw KilnError(.io, "libarchive: out of memory") }
        defer { archive_read_free(archive) }
        archive_read_support_filter_all(archive)
        archive_read_support_format_raw(archive)
        archive_read_support_format_empty(archive)
        func failure() -> KilnError {
            let reason = archive_error_string(archive).map { String(cString: $0) } ?? "unknown error"
            return KilnError(.io, "cannot decompress \(location): \(reason)")
        }
        return try data.withUnsafeBytes { raw in
            guard archive_read_open_memory(archive, raw.baseAddress, raw.count) == ARCHIVE_OK else { throw failure() }
            var entry: OpaquePointer?
            let header = archive_read_next_header(archive, &entry)
            if header == ARCHIVE_EOF { return Data() }
            guard header == ARCHIVE_OK || header == ARCHIVE_WARN else { throw failure() }
            var out = Data(capacity: min(data.count * 6, 256 << 20))
            var buffer = [UInt8](repeating: 0, count: 1 << 20)
            while true {
                let n = buffer.withUnsafeMutableBytes { archive_read_data(archive, $0.baseAddress, $0.count) }
                if n == 0 { break }
                guard n > 0 else { throw failure() }
                out.append(buffer, count: n)
            }
            return out
        }
    }

    // MARK: Transport

    enum Body {
        case data(Data)
        /// HTTP 404/410 or a missing file: the message says which.
        case missing(String)
    }

    // Ephemeral and uncached: a Release file served from a cache would hide new packages.
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    static func require(_ location: String) async throws -> Data {
        switch try await request(location) {
        case .data(let data): return data
        case .missing(let message): throw KilnError(.io, message)
        }
    }

    static func request(_ location: String) async throws -> Body {
        guard let url = URL(string: location), let scheme = url.scheme?.lowercased() else {
            throw KilnError(.invalidInput, "invalid repository URL \(location)")
        }
        if scheme == "file" {
            guard let data = FileManager.default.contents(atPath: url.path) else {
                return .missing("\(location): no such file")
            }
            return .data(data)
        }
        guard scheme == "http" || scheme == "https" else {
            throw KilnError(.invalidInput, "\(location): only http, https and file repositories are supported")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(from: url)
        } catch {
            if Task.isCancelled { throw KilnError(.cancelled, "fetching \(location) was cancelled") }
            throw KilnError(.io, "cannot reach \(location): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 200
        switch status {
        case 200: return .data(data)
        case 404, 410: return .missing("\(location): HTTP \(status)")
        default: throw KilnError(.io, "\(location): HTTP \(status)")
        }
    }
}
