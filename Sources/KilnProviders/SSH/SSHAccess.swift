import Foundation
import KilnCore

/// A build machine's SSH login: its loopback port, the build's key, and its host keys pinned.
public struct SSHAccess: Sendable, Equatable {
    public var host: String
    public var port: Int
    public var user: String
    /// The build's private key: it opens this machine only, and dies with the build.
    public var privateKey: String
    /// A known_hosts file with this machine's host keys, as the build's own connection received them.
    public var knownHosts: String
    /// The build's master connection: clients that use it skip the key exchange (seconds under TCG).
    public var controlPath: String?

    public init(host: String, port: Int, user: String, privateKey: String, knownHosts: String, controlPath: String?) {
        (self.host, self.port, self.user, self.privateKey) = (host, port, user, privateKey)
        (self.knownHosts, self.controlPath) = (knownHosts, controlPath)
    }

    /// OpenSSH options that log in with the build's key and refuse any other host key.
    public var options: [String] {
        var options = [
            "-o", "IdentitiesOnly=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile=\(knownHosts)",
        ]
        if let controlPath { options += ["-o", "ControlMaster=no", "-o", "ControlPath=\(controlPath)"] }
        return options
    }

    /// The command line a person types to log in.
    public var command: String {
        ["ssh", "-i", privateKey, "-p", String(port), "-o", "UserKnownHostsFile=\(knownHosts)", "\(user)@\(host)"]
            .map(ShellQuote.word).joined(separator: " ")
    }
}

/// The host keys cloud-init prints on an instance's serial console, between
/// `-----BEGIN SSH HOST KEY KEYS-----` and `-----END SSH HOST KEY KEYS-----`: a channel the
/// network cannot touch (EC2 serves it over its signed API), so a key read there pins the
/// instance before the first login.
public enum ConsoleHostKeys {
    /// `type base64` of each key in the last complete block; empty when there is none.
    public static func parse(_ console: String) -> [String] {
        let lines = console.split(whereSeparator: \.isNewline).map { $0.trimmingCharacters(in: .whitespaces) }
        guard let end = lines.lastIndex(where: { $0.hasSuffix("-----END SSH HOST KEY KEYS-----") }),
            let begin = lines[..<end].lastIndex(where: { $0.hasSuffix("-----BEGIN SSH HOST KEY KEYS-----") })
        else { return [] }
        return lines[(begin + 1)..<end].compactMap { line in
            let fields = line.split(separator: " ")
            guard fields.count >= 2, fields[0].hasPrefix("ssh-") || fields[0].hasPrefix("ecdsa-"),
                Data(base64Encoded: String(fields[1])) != nil
            else { return nil }
            return "\(fields[0]) \(fields[1])"
        }
    }

    /// known_hosts lines for `host` (port 22).
    public static func knownHosts(_ keys: [String], host: String) -> String {
        keys.map { "\(host) \($0)\n" }.joined()
    }
}
