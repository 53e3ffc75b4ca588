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
