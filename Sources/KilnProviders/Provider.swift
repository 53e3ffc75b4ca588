import Foundation
import KilnCore
import KilnModel

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
    /// The template's `provider:` settings, typed: each provider reads its own case.
    public var settings: ProviderSettings
    public var bootTimeout: Duration
    public var shutdownTimeout: Duration
    /// The image's family, and the template's directory (relative paths in a plugin's settings).
    public var family = ""
    public var templateDirectory = ""
    /// A base starts from this provider image (`from: {provider_image: ID}`).
    public var sourceImage: String?
    /// A layer starts from its parent's artifact, whose files are in `parentDirectory`.
    public var parentArtifact: ProviderArtifact?
    public var parentDirectory: String?
    /// How long one step may take (`--step-timeout`): a plugin's requests that do work are bounded by it.
    public var stepTimeout: Duration = .seconds(7200)
    /// A build VM, or a test boot of a sealed image (docs/testing.md).
    public var purpose = Purpose.build
    /// Guest TCP ports forwarded from free loopback ports (a test boot's `test.ports`).
    public var ports: [Int] = []
    /// Where a build VM may be resumed from, and saved as, a warm snapshot of a machine booted
    /// on the same parent (docs/building.md); nil boots cold. Providers that cannot ignore it.
    public var warm: WarmCache?

    public enum Purpose: Sendable {
        /// Provisioning: the fastest boot kiln can make, on a disk that becomes the image.
        case build
        /// The sealed image started as a deployment starts it (its firmware path, boot loader and
        /// first boot), on a throw-away disk `growBy` bytes larger than the image's, so its root
        /// grows as an instance's does.
        case test(growBy: Int64)
    }

    public var isTestBoot: Bool {
        if case .test = purpose { return true }
        return false
    }

    public init(
        buildID: String, diskDirectory: String, backingDisk: String, scratchDirectory: String,
        kernel: String?, initrd: String?, settings: ProviderSettings,
        bootTimeout: Duration = .seconds(300), shutdownTimeout: Duration = .seconds(60)
    ) {
        (self.buildID, self.diskDirectory, self.backingDisk, self.scratchDirectory) = (
            buildID, diskDirectory, backingDisk, scratchDirectory
        )
        (self.kernel, self.initrd, self.settings, self.bootTimeout) = (kernel, initrd, settings, bootTimeout)
        self.shutdownTimeout = shutdownTimeout
    }

    /// qemu's settings (the defaults when the template gave none, or the build's provider
    /// is a test's stand-in for qemu).
    public var qemu: QemuSettings { settings.qemu ?? QemuSettings() }
}

/// The warm snapshots a build may use: their directory, and the blob the build's disk stands on.
public struct WarmCache: Sendable {
    public var directory: String
    public var parentDigest: String

    public init(directory: String, parentDigest: String) {
        (self.directory, self.parentDigest) = (directory, parentDigest)
    }
}

/// A provider makes machines; the pair mirrors a hypervisor and its instances.
public protocol Provider: Sendable {
    var name: String { get }
    /// Whether a base starts from a source disk (`from: debootstrap/file/url`, qemu) rather
    /// than from a provider image (`from: {provider_image: ID}`).
    var buildsFromDisks: Bool { get }
    /// Creates the machine's disk and boots it until the communicator answers.
    func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine
    /// How a person boots a failed build's kept disk to look inside (`--on-error=keep`).
    func debugInstructions(_ spec: MachineSpec) -> String
    /// Brings the provider's copy of `image` in line with the catalog (its name and lifecycle
    /// state): called after the commit and after every lifecycle change. What the provider
    /// cannot do is a warning, not a failure: the catalog stays the truth.
    func imageChanged(_ image: ImageRecord, artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws
    /// Removes the provider's copy of a purged image.
    func deleteImage(_ artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws
    /// Whether ``start(_:log:)`` takes a test boot (``MachineSpec/Purpose/test(growBy:)``): a
    /// template with `test:` is built only by a provider that does.
    var bootsImagesForTests: Bool { get }
}

extension Provider {
    public var buildsFromDisks: Bool { false }
    public var bootsImagesForTests: Bool { false }
    public func imageChanged(_ image: ImageRecord, artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {}
    public func deleteImage(_ artifact: ProviderArtifact, warn: @escaping @Sendable (String) -> Void) async throws {}
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
    /// Copies a guest file or directory to `destination` on the host (a `file:` step with
    /// `direction: download`).
    func download(source: String, destination: String, title: String, log: BuildLog) async throws
    /// After ``shutdown(log:)``: turns the machine's disk into the image in `directory` (the
    /// image's staging directory). nil when the disk is already there as `disk.qcow2` (qemu);
    /// else the provider's artifact, whose files it wrote there.
    func snapshot(into directory: String, name: String, log: BuildLog) async throws -> ProviderArtifact?
    /// Stops the machine at once, whatever its state. Safe to call more than once.
    func destroy() async
    /// Where each of ``MachineSpec/ports`` is reachable from the host: guest port -> loopback port.
    func forwardedPorts() -> [Int: Int]
}

/// What ``Machine/capture(script:title:log:timeout:)`` returns, from a run that reports lines:
/// standard output collected, standard error into the log.
func captured(
    title: String, log: BuildLog, _ run: (@escaping @Sendable (ProcessOutputLine) -> Void) async throws -> Int32
) async throws -> (status: Int32, output: String) {
    let output = Locked<[String]>([])
    let status = try await run { line in
        if line.stream == .stdout { output.withLock { $0.append(line.text) } } else { log.emit(title, line.text) }
    }
    return (status, output.value.map { $0 + "\n" }.joined())
}

extension Machine {
    public func snapshot(into directory: String, name: String, log: BuildLog) async throws -> ProviderArtifact? { nil }
    public func forwardedPorts() -> [Int: Int] { [:] }
}

/// The one place providers are registered: the built-in ones by name, and plugins, which are
/// executables named `kiln-provider-NAME` in `$KILN_HOME/plugins` or on `PATH` (docs/providers.md).
public enum Providers {
    public static let pluginPrefix = "kiln-provider-"

    /// The built-in providers: adding one is its folder and one line here. One without typed
    /// settings of its own receives the template's as JSON (``ProviderSettings/json``).
    static let builtIn: KeyValuePairs<String, @Sendable () -> any Provider> = [
        "qemu": { QemuProvider() },
        "aws": { AWSProvider() },
    ]

    /// - Parameter pluginDirectory: searched before `PATH` (the store's `plugins/`).
    public static func named(_ name: String, pluginDirectory: String? = nil) throws -> any Provider {
        if let make = builtIn.first(where: { $0.key == name })?.value { return make() }
        if let executable = findPlugin(name, in: pluginDirectory) { return PluginProvider(name: name, executable: executable) }
        throw KilnError(
            .invalidInput,
            "unknown provider '\(name)': built in are \(builtIn.map(\.key).joined(separator: ", ")), and no plugin \(pluginPrefix)\(name) is in "
                + (pluginDirectory.map { $0 + " or " } ?? "") + "on PATH")
    }

    static func findPlugin(_ name: String, in directory: String?) -> String? {
        if let directory {
            let candidate = directory + "/" + pluginPrefix + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return ProcessRunner.find(pluginPrefix + name)
    }
}
