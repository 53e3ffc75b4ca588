import Foundation
import KilnCore
import KilnModel

/// How kiln works inside a build machine over SSH: run a step's script, upload, download, pin
/// the host keys, and kill a step's processes when it is stopped. One type for every provider
/// that logs in over SSH (qemu, aws), kept apart from the machines themselves as Packer keeps
/// its communicator apart from its drivers: the two copies it replaces had already drifted.
///
/// The rules, the same for every provider:
/// - A step's script is sent on stdin to `/tmp/kiln-step.sh` and run by `/bin/sh -e` as root
///   (through `sudo -n` when the login user is not root), with stdin from /dev/null.
/// - Values reach the guest's shell only as single-quoted words (``ShellQuote``), and a step's
///   environment only on stdin, never in an argument list that `ps` shows.
/// - The remote shell leads a process group; its id goes to ``stepGroupFile``, so a step that
///   is stopped (its timeout, an interrupted build) is killed in the guest, where it could
///   otherwise hold a lock (dpkg's) against its retry or the next step.
/// - Uploads and downloads are steps: the step's own limit bounds them, nothing else.
/// - The host keys are read once, over the build's own logged-in connection, and pinned in
///   the build's `known_hosts` for every later login (ansible, a person at a breakpoint).
final class SSHCommunicator: Sendable {
    static let scriptFile = "/tmp/kiln-step.sh"
    static let stepGroupFile = "/tmp/kiln-step.pgid"
    /// The step's environment, mode 0600, removed by the step's shell before the script runs.
    static let environmentFile = "/tmp/kiln-step.env"

    let client: SSHClient
    /// Where the build keeps its scratch files (the upload archive, known_hosts).
    let scratchDirectory: String
    /// Shell text run before each step, in the same login (qemu points the resolver at QEMU's).
    let prelude: String?
    private let master = Locked<Task<ProcessResult, any Error>?>(nil)
    private let knownHosts = Locked<String?>(nil)

    init(client: SSHClient, scratchDirectory: String, prelude: String? = nil) {
        self.client = client
        self.scratchDirectory = scratchDirectory
        self.prelude = prelude
    }

    /// `sudo -n` when the login user is not root (Debian's cloud images log in as `admin`).
    var asRoot: [String] { client.user == "root" ? [] : ["sudo", "-n"] }
    private var root: String { asRoot.isEmpty ? "" : asRoot.joined(separator: " ") + " " }

    var isConnected: Bool { master.value != nil }

    /// Logs in and keeps that connection as the master every later command goes through.
    func connect(
        deadline: ContinuousClock.Instant, isAlive: @escaping @Sendable () async -> Bool, onBanner: @Sendable () -> Void = {}
    ) async throws {
        let task = try await client.connectMaster(deadline: deadline, isAlive: isAlive, onBanner: onBanner)
        master.set(task)
    }

    /// Runs `script` as root; returns its exit status. Its lines go to `onLine`.
    func run(
        script: String, environment: [EnvVar], timeout: Duration?, onLine: @escaping @Sendable (ProcessOutputLine) -> Void
    ) async throws -> ProcessResult {
        // The environment travels on stdin ahead of the script, never on a command line, where
        // `ps` on the host or in the guest would show a secret: the first `count` bytes are a
        // file of `export NAME='value'` lines that the step's shell reads and removes first.
        let exports = Data(environment.map { "export \($0.name)=\(ShellQuote.quote($0.value))\n" }.joined().utf8)
        // umask 077 while the environment file and the script are written (they may hold
        // secrets); the step itself runs with Debian's 022, as a login would, so what it creates
        // in the image (/etc files, directories a service reads) has the modes users expect.
        let start = ". \(Self.environmentFile) && rm -f \(Self.environmentFile) && umask 022 && exec /bin/sh -e \(Self.scriptFile)"
        let steps = [
            prelude, "umask 077", "echo $$ > \(Self.stepGroupFile)",
            "dd of=\(Self.environmentFile) bs=1 count=\(exports.count) 2>/dev/null", "cat > \(Self.scriptFile)",
            "exec \(ShellQuote.join(asRoot + ["/bin/sh", "-c", start])) < /dev/null",
        ]
        do {
            return try await client.run(
                steps.compactMap { $0 }.joined(separator: " && "), input: .data(exports + Data(script.utf8)), timeout: timeout,
                onLine: onLine)
        } catch {
            await killStep()
            throw error
        }
    }

    /// Runs `script` as ``run(script:environment:timeout:onLine:)`` does; standard output is
    /// returned, standard error goes to `log` under `title`.
    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String) {
        try await captured(title: title, log: log) { try await run(script: script, environment: [], timeout: timeout, onLine: $0).status }
    }

    /// Stopping the ssh client of a step leaves its command running in the guest: kill its group.
    private func killStep() async {
        let command =
            "[ -s \(Self.stepGroupFile) ] && \(root)kill -KILL -- -$(cat \(Self.stepGroupFile)); rm -f \(Self.stepGroupFile)"
        await uncancellable { [client] in _ = try? await client.run(command, timeout: .seconds(30)) }
    }

    /// Copies a host file or directory into the guest (see ``Step/Kind/file(src:dest:contentsOnly:)``):
    /// a file lands at exactly `destination`; a directory goes under it, or only its contents.
    func upload(source: String, destination: String, contentsOnly: Bool, onLine: @escaping @Sendable (ProcessOutputLine) -> Void)
        async throws
    {
        var isDirectory: ObjCBool = false
        FileManager.default.fileExists(atPath: source, isDirectory: &isDirectory)
        let tar = scratchDirectory + "/upload-\(UUID().uuidString.prefix(8)).tar"
        defer { try? FileManager.default.removeItem(atPath: tar) }
        var target = destination
        if !isDirectory.boolValue {
            let url = URL(fileURLWithPath: destination)
            try TarWriter.write(source: source, prefix: url.lastPathComponent, to: tar)
            target = url.deletingLastPathComponent().path
        } else {
            try TarWriter.write(source: source, prefix: contentsOnly ? "" : URL(fileURLWithPath: source).lastPathComponent, to: tar)
        }
        let quoted = ShellQuote.quote(target)
        let result = try await client.run("\(root)mkdir -p \(quoted) && \(root)tar -x -f - -C \(quoted)", input: .file(tar), onLine: onLine)
        guard result.succeeded else { throw KilnError(.buildFailed, "upload to \(destination) failed (tar exited \(result.status))") }
    }

    /// Copies a guest file or directory to `destination` on the host.
    func download(source: String, destination: String, onLine: @escaping @Sendable (ProcessOutputLine) -> Void) async throws {
        try await client.download(source, to: destination, onLine: onLine)
    }

    /// The login a host tool or a person uses: the build's key, the host keys pinned.
    func access() async throws -> SSHAccess {
        let path = try await pinnedHostKeys()
        return SSHAccess(
            host: client.host, port: client.port, user: client.user, privateKey: client.keyPath, knownHosts: path,
            controlPath: isConnected ? client.controlPath : nil)
    }

    /// Reads the guest's host keys over the build's logged-in connection (the keys of the guest
    /// this build started) into `known_hosts`, once.
    private func pinnedHostKeys() async throws -> String {
        if let path = knownHosts.value { return path }
        // The file the first login recorded the key in, completed with the guest's other keys
        // (read over that login, so they are the same guest's).
        let path = client.knownHosts
        let result = try await client.run("cat /etc/ssh/ssh_host_*_key.pub", timeout: .seconds(120))
        let name = client.port == 22 ? client.host : "[\(client.host)]:\(client.port)"
        let keys = result.stdout.split(separator: "\n").compactMap { line -> String? in
            let fields = line.split(separator: " ")
            return fields.count >= 2 ? "\(name) \(fields[0]) \(fields[1])\n" : nil
        }
        guard result.succeeded, !keys.isEmpty else {
            throw KilnError(.providerFailed, "cannot read the guest's SSH host keys (exit \(result.status)): \(result.stderr)")
        }
        try keys.joined().write(toFile: path, atomically: true, encoding: .utf8)
        knownHosts.set(path)
        return path
    }

    /// Ends the master connection; later commands would log in again.
    func close() async {
        guard
            let task = master.withLock({ master -> Task<ProcessResult, any Error>? in
                defer { master = nil }
                return master
            })
        else { return }
        task.cancel()
        _ = await task.result
        try? FileManager.default.removeItem(atPath: client.controlPath)
    }
}
