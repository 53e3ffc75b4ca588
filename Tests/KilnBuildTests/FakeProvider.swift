import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnProviders
import KilnTemplates

/// A provider that boots nothing: it writes a stand-in disk and records what the orchestrator
/// asked of it. For testing the orchestration only; real builds are tested in KilnVMTests.
final class FakeProvider: Provider {
    let name = "fake"
    /// It stands in for qemu: bases start from source disks, and sealed images boot for tests.
    var buildsFromDisks: Bool { true }
    var bootsImagesForTests: Bool { true }
    let events = Locked<[String]>([])
    /// Machines started and not yet destroyed.
    let running = Locked(0)
    /// A script containing this text exits with status 3.
    let failMarker = "FAIL-HERE"
    /// Runs when a machine is shut down, before kiln seals its disk.
    let onShutdown = Locked<(@Sendable () -> Void)?>(nil)
    /// What the guest's dpkg-query prints at the end of a build (empty: a guest without dpkg).
    let packages = Locked("")

    func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine {
        let disk = spec.diskDirectory + "/disk.qcow2"
        // A real overlay, as qemu's would be (kiln checks a blob's backing file before it
        // trusts it), with a sector of its own so that each build's disk differs.
        try await ProcessRunner.check("qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.backingDisk, "-F", "qcow2", disk])
        let hash = Hashing.sha256Hex(Data(spec.buildID.utf8))
        let sector = Int(hash.dropFirst(2).prefix(4), radix: 16)! % 2048
        try await ProcessRunner.check("qemu-io", ["-f", "qcow2", "-c", "write -q -P 0x\(hash.prefix(2)) \(sector * 512) 512", disk])
        if case .test(let growBy) = spec.purpose {
            events.withLock { $0.append("test boot backing=\(spec.backingDisk) grow=\(growBy) ports=\(spec.ports)") }
        } else {
            events.withLock { $0.append("start backing=\(spec.backingDisk)") }
        }
        running.withLock { $0 += 1 }
        // Stand-in loopback ports: 10000 + the guest's.
        return FakeMachine(provider: self, ports: Dictionary(uniqueKeysWithValues: spec.ports.map { ($0, 10000 + $0) }))
    }

    func debugInstructions(_ spec: MachineSpec) -> String { "boot \(spec.diskDirectory)" }
}

final class FakeMachine: Machine {
    let provider: FakeProvider
    let ports: [Int: Int]

    init(provider: FakeProvider, ports: [Int: Int] = [:]) {
        self.provider = provider
        self.ports = ports
    }

    func forwardedPorts() -> [Int: Int] { ports }

    func run(script: String, environment: [EnvVar], title: String, log: BuildLog, timeout: Duration?) async throws -> Int32 {
        provider.events.withLock { $0.append("run \(script) env=\(environment.map { "\($0.name)=\($0.value)" })") }
        log.emit(title, "ran: \(script)")
        // A guest that prints its environment, as a careless step would.
        if script.contains("KILN_VAR_") { log.emit(title, "env: " + environment.map { "\($0.name)=\($0.value)" }.joined(separator: " ")) }
        if script.contains("SLOW") {
            // Long enough for a second build to start beside this one, on a loaded machine
            // too: it waits (a second at most) for another machine, then 300 ms. A builder
            // that runs one build at a time still shows as one: no second machine comes.
            for _ in 0..<20 where provider.running.value < 2 { try await Task.sleep(for: .milliseconds(50)) }
            try await Task.sleep(for: .milliseconds(300))
        }
        // The host fails the step (a full disk, say): not the guest's doing.
        if script.contains("HOST-ERROR") { throw KilnError(.io, "no space left on the host's device") }
        // Hangs until the step's timeout (or a cancelled build) stops it.
        if script.contains("HANG") { try await Task.sleep(for: .seconds(3600)) }
        // `FLAKY-N` fails until its Nth run.
        if let range = script.range(of: #"FLAKY-\d+"#, options: .regularExpression), let n = Int(script[range].dropFirst(6)) {
            let runs = provider.events.value.filter { $0.hasPrefix("run ") && $0.contains(script[range]) }.count
            return runs >= n ? 0 : 4
        }
        return script.contains(provider.failMarker) ? 3 : 0
    }

    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String) {
        provider.events.withLock { $0.append("capture \(title)") }
        return (0, provider.packages.value)
    }

    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws {
        provider.events.withLock { $0.append("upload \((source as NSString).lastPathComponent) -> \(destination)") }
    }

    func download(source: String, destination: String, title: String, log: BuildLog) async throws {
        provider.events.withLock { $0.append("download \(source) -> \((destination as NSString).lastPathComponent)") }
    }

    func sshAccess() async throws -> SSHAccess? {
        SSHAccess(
            host: "127.0.0.1", port: 2222, user: "root", privateKey: "/fake/id_ed25519", knownHosts: "/fake/known_hosts", controlPath: nil)
    }

    func shutdown(log: BuildLog) async throws {
        provider.events.withLock { $0.append("shutdown") }
        provider.onShutdown.value?()
    }

    func destroy() async {
        provider.running.withLock { $0 -= 1 }
        provider.events.withLock { $0.append("destroy") }
    }
}

/// Keeps every event a build reports, in order.
final class CollectingReporter: BuildReporter {
    let events = Locked<[BuildEvent]>([])
    func report(_ event: BuildEvent) { events.withLock { $0.append(event) } }
}
