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
