import Foundation
import KilnCore

/// Talks to the guest through the system's OpenSSH client with a per-build key.
///
/// The OpenSSH client is used rather than an in-process SSH library because it is what the
/// guest's sshd is tested against, and it streams large uploads through a pipe for free.
struct SSHClient: Sendable {
    let keyPath: String
    let port: Int
    let user = "root"

    private var options: [String] {
        [
            "-i", keyPath, "-p", String(port),
            // The guest's host key is made fresh on every boot of a throw-away VM on loopback.
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=2", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6",
            "\(user)@127.0.0.1",
        ]
    }

    /// Runs `command` (a shell line: quote values with ``ShellQuote``) in the guest.
    func run(
        _ command: String, input: ProcessInput = .none, timeout: Duration? = nil,
        onLine: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> ProcessResult {
        try await ProcessRunner.run("ssh", options + ["--", command], input: input, timeout: timeout, onLine: onLine)
    }

    /// Polls until a command succeeds or `deadline` passes. ConnectTimeout bounds the connect
    /// and the banner wait (QEMU's forwarder accepts before the guest answers) of each attempt,
    /// and the outer timeout the key exchange and login.
    func waitReady(deadline: ContinuousClock.Instant, isAlive: @Sendable () async -> Bool) async throws {
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            guard await isAlive() else { throw KilnError(.providerFailed, "the VM exited before SSH came up") }
            let result = try await ProcessRunner.run("ssh", options + ["--", "true"], timeout: .seconds(8))
            if result.succeeded { return }
            try await Task.sleep(for: .milliseconds(500))
        }
        throw KilnError(.timeout, "SSH did not come up")
    }
}
