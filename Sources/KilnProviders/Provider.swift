import KilnCore
import KilnTemplates

/// Everything a provider needs to start one build's machine.
public struct MachineSpec: Sendable {
    public var buildID: String
    /// Directory holding `disk.qcow2`; the provider creates the disk there.
    public var diskDirectory: String
    /// The disk the machine starts from, relative to `diskDirectory` (kept relative so the store can move).
    public var backingDisk: String
    /// Scratch space for keys, sockets and pid files; removed with the build.
    public var scratchDirectory: String
    /// Direct kernel boot; nil boots the disk's own bootloader.
    public var kernel: String?
    public var initrd: String?
    public var settings: QemuSettings
    public var bootTimeout: Duration
    public var shutdownTimeout: Duration

    public init(
        buildID: String, diskDirectory: String, backingDisk: String, scratchDirectory: String,
        kernel: String?, initrd: String?, settings: QemuSettings,
        bootTimeout: Duration = .seconds(300), shutdownTimeout: Duration = .seconds(60)
    ) {
        self.buildID = buildID
        self.diskDirectory = diskDirectory
        self.backingDisk = backingDisk
        self.scratchDirectory = scratchDirectory
        self.kernel = kernel
        self.initrd = initrd
        self.settings = settings
        self.bootTimeout = bootTimeout
        self.shutdownTimeout = shutdownTimeout
    }
}

/// A provider makes machines; the pair mirrors a hypervisor and its instances.
public protocol Provider: Sendable {
    var name: String { get }
    /// Creates the machine's disk and boots it until the communicator answers.
    func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine
    /// How a person boots a failed build's kept disk to look inside (`--on-error=keep`).
    func debugInstructions(_ spec: MachineSpec) -> String
}

/// A running provisioning machine.
public protocol Machine: Sendable {
    /// Runs `script` with `/bin/sh -e` as root; returns its exit status. Output goes to `log` under `title`.
    func run(script: String, environment: [EnvVar], title: String, log: BuildLog, timeout: Duration?) async throws -> Int32
    /// Runs `script` as ``run(script:environment:title:log:timeout:)`` does, but returns its
    /// standard output instead of logging it (standard error still goes to `log`).
    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String)
    /// Copies a host file or directory into the guest (see ``Step/Kind/file(src:dest:contentsOnly:)``).
    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws
    /// How a host tool (an `ansible:` step) or a person (at a breakpoint) logs into the machine;
    /// nil when it takes no SSH logins.
    func sshAccess() async throws -> SSHAccess?
    /// Removes build credentials, leaves a cleanly unmounted filesystem, and stops the machine.
    func shutdown(log: BuildLog) async throws
    /// Stops the machine at once, whatever its state. Safe to call more than once.
    func destroy() async
}

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
        self.host = host
        self.port = port
        self.user = user
        self.privateKey = privateKey
        self.knownHosts = knownHosts
        self.controlPath = controlPath
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

/// The one place providers are registered.
public enum Providers {
    public static func named(_ name: String) throws -> any Provider {
        switch name {
        case "qemu": return QemuProvider()
        default: throw KilnError(.invalidInput, "unknown provider '\(name)' (available: qemu)")
        }
    }
}
