import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// Talks to the guest through the system's OpenSSH client with a per-build key.
///
/// The OpenSSH client is used rather than an in-process SSH library because it is what the
/// guest's sshd is tested against, and it streams large uploads through a pipe for free.
/// One master connection carries every command of a build (`ControlMaster`): a key exchange
/// costs a second or more under TCG, so steps and the shutdown reuse the first login's.
struct SSHClient: Sendable {
    /// `host` is 127.0.0.1 for QEMU's forwarded port, an instance's address for a cloud provider.
    let keyPath, host, user: String
    let port: Int
    /// The master connection's socket. Kept short: a Unix socket path holds at most 107 bytes,
    /// and the store's build directory can be deeper than that.
    let controlPath: String

    /// The OpenSSH client; tests give a stand-in that records its arguments.
    let program: String
    /// The build's own known_hosts, beside its key: the guest's host key is recorded at the
    /// first login and required from then on.
    let knownHosts: String

    /// How long one readiness probe holds its connection (see ``connectMaster(deadline:isAlive:onBanner:)``).
    let probeWait: Int32
    /// The key the master connection logs in with when it is not ``keyPath``: a resumed warm
    /// snapshot's, whose one login hands the guest over to ``keyPath`` (docs/building.md).
    var masterKeyPath: String?

    init(
        keyPath: String, port: Int, host: String = "127.0.0.1", user: String = "root", program: String = "ssh",
        probeWait: Int32 = SSHClient.shortProbeWait
    ) {
        (self.keyPath, self.port, self.host, self.user, self.program) = (keyPath, port, host, user, program)
        self.probeWait = probeWait
        knownHosts = (keyPath as NSString).deletingLastPathComponent + "/known_hosts"
        let tag = UUID().uuidString.prefix(12).lowercased()
        controlPath = NSTemporaryDirectory() + "kiln-ssh-\(tag).sock"
    }

    private var options: [String] { options(key: keyPath) }

    private func options(key: String) -> [String] {
        [
            "-i", key, "-p", String(port),
            // Trust on first use, per build: the guest makes a fresh host key at boot, and the
            // first login happens while the provider's machine provably holds the address (the
            // provider checks it is still alive after that login). From then on the key is
            // required: whatever takes the port after QEMU dies cannot pose as the guest.
            "-o", "StrictHostKeyChecking=accept-new", "-o", "UserKnownHostsFile=\(knownHosts)",
            "-o", "GlobalKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR",
            "-o", "ConnectTimeout=5", "-o", "ServerAliveInterval=10", "-o", "ServerAliveCountMax=6",
            "-o", "ControlPath=\(controlPath)",
        ]
    }

    private var destination: String { "\(user)@\(host)" }

    /// Copies a guest file or directory (recursively) to `local` over the master connection.
    func download(_ remote: String, to local: String, onLine: @escaping @Sendable (ProcessOutputLine) -> Void) async throws {
        // scp spells the port -P; everything else is the same options.
        var scpOptions = options
        if let index = scpOptions.firstIndex(of: "-p") { scpOptions[index] = "-P" }
        let result = try await ProcessRunner.run(
            "scp", ["-q", "-r"] + scpOptions + ["-o", "ControlMaster=no", "\(destination):\(remote)", local], timeout: .seconds(3600),
            onLine: onLine)
        guard result.succeeded else {
            throw KilnError(.buildFailed, "download of \(remote) failed (scp exited \(result.status)): \(result.stderr.suffix(300))")
        }
    }

    /// Runs `command` (a shell line: quote values with ``ShellQuote``) in the guest, over the
    /// master connection when it is up (OpenSSH connects on its own when it is not).
    func run(
        _ command: String, input: ProcessInput = .none, timeout: Duration? = nil,
        onLine: (@Sendable (ProcessOutputLine) -> Void)? = nil
    ) async throws -> ProcessResult {
        try await ProcessRunner.run(
            program, options + ["-o", "ControlMaster=no", destination, "--", command], input: input, timeout: timeout,
            onLine: onLine)
    }

    /// Waits until the guest's sshd answers, then logs in once and keeps that connection as
    /// the master until `deadline`'s owner cancels the returned task (or the guest goes away).
    ///
    /// The banner is probed in-process: cheaper than starting `ssh` (QEMU's forwarder accepts
    /// at once, so a client would sit out its whole ConnectTimeout while the guest has no
    /// address yet). Each probe holds its connection for up to ``probeWait``. A guest that takes
    /// its address from DHCP (a test boot: the image's own network) has none for most of its
    /// boot, and QEMU keeps each connection's SYN queued until the guest answers ARP, then
    /// delivers every queued one at once: short probes queued one SYN every 400 ms, sshd then
    /// forked a child for each of dozens of dead connections, and its banner came 11 s after
    /// it started. There a probe holds its connection (``heldProbeWait``). A build boot's
    /// address is static and early, so the held connection buys nothing there, and six build
    /// boots each way, alternated, saw sshd's banner later with it (median 16.8 s against
    /// 15.3 s): a build boot probes short (``shortProbeWait``). A guest that refuses (sshd not up yet) resets the
    /// connection at once, and the next probe follows 100 ms later. A login can still fail
    /// right after the banner (the key is provisioned by systemd a moment later): it is
    /// retried until the deadline.
    func connectMaster(
        deadline: ContinuousClock.Instant, isAlive: @Sendable () async -> Bool,
        onBanner: @Sendable () -> Void = {}
    ) async throws -> Task<ProcessResult, any Error> {
        var lastFailure: String?
        var bannerSeen = false
        while ContinuousClock.now < deadline {
            try Task.checkCancellation()
            guard await isAlive() else { throw KilnError(.providerFailed, "the VM exited before SSH came up") }
            // No probe (``noProbe``) for a guest known to listen: each probe is a connection
            // sshd forks and re-executes itself for, which costs most of a second under TCG.
            let answered = probeWait == Self.noProbe ? true : await Self.probeBanner(host: host, port: port, wait: probeWait)
            guard answered else {
                try await Task.sleep(for: .milliseconds(100))
                continue
            }
            if !bannerSeen {
                bannerSeen = true
                onBanner()
            }
            try? FileManager.default.removeItem(atPath: controlPath)
            let exited = Locked(false)
            let master = Task {
                defer { exited.set(true) }
                return try await ProcessRunner.run(
                    program,
                    options(key: masterKeyPath ?? keyPath) + ["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N", destination])
            }
            // The master creates its socket once it has logged in. The machine must still be
            // alive then: the host key just recorded must be its guest's.
            do {
                while ContinuousClock.now < deadline && !exited.value {
                    if FileManager.default.fileExists(atPath: controlPath) {
                        guard await isAlive() else {
                            _ = await Self.stop(master)
                            throw KilnError(.providerFailed, "the VM exited while kiln logged in: whatever answered was not its guest")
                        }
                        return master
                    }
                    try await Task.sleep(for: .milliseconds(50))
                }
            } catch {
                _ = await Self.stop(master)
                throw error
            }
            if let reason = await Self.stop(master) { lastFailure = reason }
            try await Task.sleep(for: .milliseconds(250))
        }
        // Said when sshd answered but never let the build's key in (a base without systemd's
        // credential support, say), so the error points at the login, not at the boot.
        throw KilnError(.timeout, lastFailure.map { "sshd answered, but the login failed: \($0)" } ?? "")
    }

    /// Stops a master attempt; returns the last line it printed on stderr, if any.
    private static func stop(_ master: Task<ProcessResult, any Error>) async -> String? {
        master.cancel()
        guard case .success(let result) = await master.result else { return nil }
        return result.stderr.split(separator: "\n").last.map { String($0) }
    }

    /// ``bannerAnswers(host:port:)`` on a thread of its own: the probe blocks in connect and
    /// poll for up to a second, which must not hold one of the few threads async code runs on.
    static func probeBanner(host: String, port: Int, wait milliseconds: Int32 = 300) async -> Bool {
        // A cancelled build (Ctrl-C during boot) ends the wait within one slice, not after it.
        let stop = Locked(false)
        return await withTaskCancellationHandler {
            (try? await blocking { bannerAnswers(host: host, port: port, wait: milliseconds, stop: { stop.value }) }) ?? false
        } onCancel: {
            stop.set(true)
        }
    }

    /// How long one readiness probe waits for the banner on its connection, for a guest with a
    /// static address and for one on DHCP (see ``connectMaster(deadline:isAlive:onBanner:)``).
    static let shortProbeWait: Int32 = 300
    static let heldProbeWait: Int32 = 5000
    /// Logs in without probing: a guest resumed from a warm snapshot has listened all along.
    static let noProbe: Int32 = 0

    /// True when something on `host`:`port` (IPv4) sends an SSH identification string within
    /// `wait` milliseconds on one connection; false at once when the connection is closed.
    /// Blocking: async code calls ``probeBanner(host:port:wait:)``.
    static func bannerAnswers(
        host: String = "127.0.0.1", port: Int, wait milliseconds: Int32 = 300, stop: () -> Bool = { false }
    ) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        // A remote address that drops the SYN must not hold the probe for the kernel's 2 minutes.
        var limit = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr(host)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0
            }
        }
        guard connected else { return false }
        var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
        // In slices, so that `stop` is heard.
        var waited: Int32 = 0
        var ready = false
        while waited < milliseconds && !ready && !stop() {
            let slice = min(250, milliseconds - waited)
            ready = poll(&poller, 1, slice) == 1
            waited += slice
        }
        guard ready else { return false }
        var buffer = [UInt8](repeating: 0, count: 4)
        return recv(fd, &buffer, 4, 0) == 4 && buffer == Array("SSH-".utf8)
    }
}
