import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where an image goes: `host[:port]/repository[:tag][@sha256:<hex>]`.
///
/// The host is never implied: kiln has no default registry, so `shop/web:1` is refused rather
/// than silently sent somewhere.
public struct RegistryReference: Sendable, Equatable, CustomStringConvertible {
    /// `name[:port]`, `[v6]:port` as written.
    public var host: String
    public var repository: String
    /// `latest` when neither a tag nor a digest is written, as other tools do.
    public var tag: String?
    /// `sha256:<hex>`: the manifest pushed must have this digest.
    public var digest: String?
    /// Plain HTTP to a registry that is not on loopback.
    public var insecure: Bool

    public init(parsing text: String, insecure: Bool = false) throws {
        func invalid(_ why: String) -> KilnError {
            KilnError(.invalidInput, "invalid registry reference \"\(text)\": \(why)")
        }
        guard !text.isEmpty else { throw invalid("it is empty") }
        guard !text.contains("://") else {
            throw invalid("write it without a scheme, as host[:port]/repository:tag (plain HTTP is chosen by insecure)")
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            guard Self.isDigest(digest) else { throw invalid("digest \"\(digest)\" is not sha256:<64 lowercase hex digits>") }
            self.digest = digest
            rest = rest[..<at]
        } else {
            digest = nil
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw invalid("no registry host or no repository: write host[:port]/repository:tag")
        }
        let host = String(rest[..<slash])
        var path = rest[rest.index(after: slash)...]
        guard Self.looksLikeHost(host) else {
            throw invalid(
                "no registry host (\"\(host)\" is a repository component): write host[:port]/repository:tag, e.g. localhost:5000/\(rest)"
            )
        }
        if let problem = Self.hostProblem(host) { throw invalid(problem) }
        self.host = host
        // The host is gone, so a colon left can only start the tag.
        if let colon = path.lastIndex(of: ":") {
            let tag = String(path[path.index(after: colon)...])
            guard Self.isTag(tag) else {
                throw invalid(
                    "tag \"\(tag)\" must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
            }
            self.tag = tag
            path = path[..<colon]
        } else {
            tag = digest == nil ? "latest" : nil
        }
        let repository = String(path)
        if let problem = Self.repositoryProblem(repository) { throw invalid(problem) }
        self.repository = repository
        self.insecure = insecure
    }

    /// `http` for loopback registries (no certificate to be had there) or when asked; else `https`.
    public var scheme: String { insecure || isLoopback ? "http" : "https" }

    public var isLoopback: Bool {
        let name: Substring
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            name = host[...close]
        } else {
            name = host.split(separator: ":", maxSplits: 1).first ?? ""
        }
        return ["localhost", "127.0.0.1", "[::1]"].contains(name.lowercased())
    }

    /// The tag, else the digest: what the manifest is stored under.
    public var manifestReference: String { tag ?? digest ?? "latest" }

    public var description: String {
        host + "/" + repository + (tag.map { ":" + $0 } ?? "") + (digest.map { "@" + $0 } ?? "")
    }

    // The grammar is the distribution spec's (and its reference package's).

    public static func isDigest(_ text: String) -> Bool {
        guard text.hasPrefix("sha256:") else { return false }
        let hex = text.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    public static func isTag(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, bytes.count <= 128, isAlnum(first) || first == UInt8(ascii: "_") else {
            return false
        }
        return bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// As other clients decide it: a first component with a dot or a port, or `localhost`.
    static func looksLikeHost(_ text: String) -> Bool {
        text.contains(".") || text.contains(":") || text.hasPrefix("[") || text == "localhost"
    }

    static func hostProblem(_ host: String) -> String? {
        var name = Substring(host)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "host \"\(host)\" has no closing ']'" }
            let inside = host[host.index(after: host.startIndex)..<close]
            guard !inside.isEmpty, inside.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return "host \"\(host)\" is not an IPv6 address in brackets"
            }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return "host \"\(host)\" has text after ']' that is not a port" }
                port = after.dropFirst()
            }
            name = ""
        } else if let colon = host.firstIndex(of: ":") {
            name = host[..<colon]
            port = host[host.index(after: colon)...]
        }
        if let port {
            guard let number = Int(port), (1...65535).contains(number), port.allSatisfy(\.isASCII) else {
                return "port \"\(port)\" of host \"\(host)\" is not a number from 1 to 65535"
            }
        }
        if host.hasPrefix("[") { return nil }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, isAlnum(first), isAlnum(last),
                bytes.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") })
            else {
                return "host \"\(host)\" is not a host name: labels are letters, digits and inner '-', separated by '.'"
            }
        }
        return nil
    }

    static func repositoryProblem(_ repository: String) -> String? {
        guard !repository.isEmpty else { return "no repository after the host" }
        guard repository.utf8.count <= 255 else { return "the repository is longer than 255 characters" }
        if repository.contains(where: \.isUppercase) {
            return "repository \"\(repository)\" has uppercase letters: repository names are lowercase"
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false)
        where !isPathComponent(component) {
            return
                "repository component \"\(component)\" must be lowercase letters and digits, joined by '.', '_', '__' or dashes"
        }
        return nil
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    private static func isPathComponent(_ component: Substring) -> Bool {
        let bytes = Array(component.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var separator: [UInt8] = []
        for byte in bytes {
            if isLowerAlnum(byte) {
                if !separator.isEmpty {
                    let text = String(decoding: separator, as: UTF8.self)
                    guard text == "." || text == "_" || text == "__" || text.allSatisfy({ $0 == "-" }) else { return false }
                    separator = []
                }
            } else {
                separator.append(byte)
            }
        }
        return true
    }

    private static func isAlnum(_ byte: UInt8) -> Bool {
        isLowerAlnum(byte) || (0x41...0x5A).contains(byte)
    }

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x7A).contains(byte)
    }
}
