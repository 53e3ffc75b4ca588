import Foundation
import KilnCore
import KilnModel

#if canImport(Glibc)
    import Glibc
#endif

/// Boots the provisioning VM with QEMU: a qcow2 overlay on the parent's disk, direct kernel
/// boot, user-mode networking with one loopback port forwarded to the guest's SSH.
public struct QemuProvider: Provider {
    public let name = "qemu"
    public var buildsFromDisks: Bool { true }
    public var bootsImagesForTests: Bool { true }

    public init() {}

    /// Kernel command line of the build boot only (the image keeps its own, in its GRUB
    /// configuration). Root by label: kiln's partitioned disks and the bare filesystems of
    /// stores made before them both carry the label `root`. Each option past
    /// `net.ifnames=0` (which keeps the NIC named eth0, as the build boot's network expects) is a boot-time saving
    /// measured by bench/levers.sh: a quiet console; units a build never uses (serial output and
    /// gettys cost CPU under TCG); no speculative-execution mitigations, whose page-table
    /// switches are expensive to emulate (the build VM runs only the template's own code);
    /// QEMU's fixed user-mode network configured statically by systemd-networkd from `ip=`
    /// instead of ifupdown's DHCP client, which sat on sshd's critical path; module loaders and
    /// mounts that would share the two emulated CPUs with that path; and drivers for hardware a
    /// build never uses (the PC machine's empty IDE controller; KVM, which TCG's CPU advertises).
    /// The masked timers are a correctness matter too: apt-daily must not take the dpkg lock
    /// while a step installs packages. Growing the root to its disk is a deployment's first
    /// boot, not a build's (the build disk is the image's own size), and so is cloud-init
    /// (`cloud-init=disabled`: an image with `cloud_init: true` meets its cloud at first boot).
    static let kernelCommandLine =
        ([
            "root=LABEL=root", "rw", "console=ttyS0", "net.ifnames=0", "quiet", "loglevel=0", "systemd.show_status=0",
            "mitigations=off", "cloud-init=disabled",
            "systemd.wants=systemd-network-generator.service", "systemd.wants=systemd-networkd.service",
            "ip=\(guestAddress)::\(gatewayAddress):255.255.255.0::eth0:off",
            "modprobe.blacklist=ata_piix,ata_generic,pata_acpi,kvm,kvm_amd,kvm_intel",
        ] + maskedUnits.map { "systemd.mask=" + $0 }).joined(separator: " ")

    static let maskedUnits = [
        "ifupdown-pre.service", "networking.service", "e2scrub_reap.service",
        "getty-static.service", "getty@tty1.service", "serial-getty@ttyS0.service",
        "modprobe@loop.service", "modprobe@fuse.service", "modprobe@dm_mod.service", "modprobe@efi_pstore.service",
        "modprobe@configfs.service", "dev-hugepages.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
        "sys-fs-fuse-connections.mount", "sys-kernel-config.mount",
        "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer", "e2scrub_all.timer", "fstrim.timer",
        "systemd-tmpfiles-clean.timer", "systemd-repart.service", "systemd-growfs-root.service",
        // Daily jobs that would also catch up at once when a warm snapshot's clock is set
        // forward (Persistent=true), rotating logs and rebuilding caches in the image.
        "logrotate.timer", "man-db.timer",
    ]

    /// Syncs, has the kernel remount every filesystem read-only (SysRq `u`: a clean filesystem
    /// without systemd's slow shutdown under TCG), and waits up to 5 s for that to finish.
    /// Defines `root_is_read_only` for what follows. POSIX sh (it also runs as the boot-loader
    /// installer's PID 1), and shell builtins where a program would do: a program started in
    /// a guest just resumed from a warm snapshot costs a translation of its code under TCG.
    public static let remountReadOnly = """
        root_is_read_only() {
          while read -r device mountpoint type options rest; do
            [ "$mountpoint" = / ] && case $options in ro | ro,*) return 0 ;; esac
          done </proc/mounts
          return 1
        }
        remounts_completed() { dmesg 2>/dev/null | grep -c 'Emergency Remount complete' || true; }
        before=$(remounts_completed)
        sync
        echo u > /proc/sysrq-trigger
        # The root shows read-only before ext4 has flushed its journal and marked itself clean
        # (ext4 sets the flag first): the kernel's "Emergency Remount complete" is the end of
        # it. Without dmesg the wait runs out after 5 s, and the flush is long done by then.
        waited=0
        until { root_is_read_only && [ "$(remounts_completed)" -gt "$before" ]; } || [ "$waited" -ge 100 ]; do
          sleep 0.05
          waited=$((waited + 1))
        done
        """

    /// QEMU's user-mode network: fixed addresses, the same in every build VM.
    static let guestAddress = "10.0.2.15"
    static let gatewayAddress = "10.0.2.2"
    static let dnsAddress = "10.0.2.3"

    /// Without a DHCP client nothing writes /etc/resolv.conf: each step makes sure one points at
    /// QEMU's resolver, and the shutdown removes it again unless a step changed it, so the image
    /// keeps whatever it had before the build.
    static let prepareResolver =
        "{ [ -e /etc/resolv.conf ] || [ -L /etc/resolv.conf ] || { echo 'nameserver \(dnsAddress)' > /etc/resolv.conf && : > /run/kiln-resolv; }; }"
    static let restoreResolver =
        "if [ -e /run/kiln-resolv ] && [ \"$(cat /etc/resolv.conf 2>/dev/null)\" = 'nameserver \(dnsAddress)' ]; then rm -f /etc/resolv.conf; fi"

    public func start(_ spec: MachineSpec, log: BuildLog) async throws -> any Machine {
        var spec = spec
        // A test boot is a deployment's boot: firmware and the image's own boot loader, never
        // kiln's kernel and command line.
        if spec.isTestBoot { (spec.kernel, spec.initrd) = (nil, nil) }
        let accelerator = await Accelerator.choose(log: log)
        let warm = await warmPlan(spec, accelerator: accelerator)
        if let warm, let machine = try await resume(spec, plan: warm, accelerator: accelerator, log: log) { return machine }
        let disk = spec.diskDirectory + "/" + ImageFiles.disk
        try await ProcessRunner.check(
            "qemu-img", ["create", "-q", "-f", "qcow2", "-b", spec.backingDisk, "-F", "qcow2", disk],
            workingDirectory: spec.diskDirectory)
        if case .test(let growBy) = spec.purpose, growBy > 0 {
            // A larger disk than the image's, as a cloud gives an instance: the first boot grows the root.
            try await ProcessRunner.check("qemu-img", ["resize", "-q", "-f", "qcow2", disk, "+\(growBy)"])
        }
        let key = spec.scratchDirectory + "/id_ed25519"
        let publicKey = try await Self.makeKey(spec)
        let port = try Self.freeLoopbackPort()
        var forwards: [Int: Int] = [:]
        for guestPort in spec.ports {
            var hostPort = try Self.freeLoopbackPort()
            while hostPort == port || forwards.values.contains(hostPort) { hostPort = try Self.freeLoopbackPort() }
            forwards[guestPort] = hostPort
        }
        if spec.kernel == nil {
            try NoCloudSeed.write(to: Self.seedPath(spec), buildID: spec.buildID, publicKey: publicKey)
            log.emit(
                "kiln",
                spec.isTestBoot
                    ? "test boot: firmware, the image's boot loader and its first boot; kiln's key goes in a NoCloud seed (cidata) and a systemd credential, as a cloud gives an instance its key"
                    : "the disk boots through its own boot loader: the build key goes in a NoCloud seed (cidata) and a systemd credential"
            )
        }
        for (guestPort, hostPort) in forwards.sorted(by: { $0.key < $1.key }) {
            log.emit("kiln", "guest port \(guestPort) is forwarded from 127.0.0.1:\(hostPort)")
        }

        // A boot that saves a warm snapshot takes the save's commands on a control socket;
        // one that saves none (a test boot, `--no-warm`) is started as it was before warm
        // snapshots existed.
        let qmp = warm == nil ? nil : try Self.qmpSocketPath()
        let arguments = Self.arguments(spec, accelerator: accelerator, port: port, publicKey: publicKey, forwards: forwards, qmp: qmp)
        log.emit(
            "kiln",
            "booting \(spec.isTestBoot ? "test VM" : "VM") (\(accelerator.name), \(spec.qemu.cpus) CPUs, \(spec.qemu.memoryMiB) MiB, ssh on 127.0.0.1:\(port))"
        )
        let qemu = Task {
            try await ProcessRunner.run("qemu-system-x86_64", arguments) { line in
                log.emit(line.stream == .stdout ? "console" : "qemu", line.text)
            }
        }
        // A test boot's guest has what its own first boot gave it, a resolver included.
        let ssh = SSHCommunicator(
            client: SSHClient(
                keyPath: key, port: port, probeWait: spec.isTestBoot ? SSHClient.heldProbeWait : SSHClient.shortProbeWait),
            scratchDirectory: spec.scratchDirectory,
            prelude: spec.isTestBoot ? nil : Self.prepareResolver)
        let machine = QemuMachine(qemu: qemu, ssh: ssh, spec: spec, ports: forwards, qmp: qmp)
        let started = ContinuousClock.now
        // Boot and login apart: a slow boot and a slow first login have different causes.
        let banner = Locked<Duration?>(nil)
        do {
            try await ssh.connect(
                deadline: started + spec.bootTimeout, isAlive: { [machine] in machine.isRunning },
                onBanner: { banner.set(ContinuousClock.now - started) })
        } catch {
            await machine.destroy()
            if let error = error as? KilnError, error.code == .timeout {
                let detail = error.message.isEmpty ? "" : "; " + error.message
                throw KilnError(
                    .timeout,
                    "the guest did not answer on SSH within \(spec.bootTimeout.kilnDescription)\(detail) (see the console lines in the log)"
                )
            }
            throw error
        }
        let answered = banner.value.map { " (sshd answered after \($0.kilnDescription))" } ?? ""
        log.emit("kiln", "SSH is up after \((ContinuousClock.now - started).kilnDescription)\(answered)")
        if let warm, let qmp {
            do {
                try await saveWarm(warm, spec: spec, qmp: qmp, publicKey: publicKey, accelerator: accelerator, log: log)
            } catch {
                await machine.destroy()
                throw error
            }
        }
        return machine
    }

    static func arguments(
        _ spec: MachineSpec, accelerator: Accelerator, port: Int, publicKey: String, forwards: [Int: Int] = [:], qmp: String? = nil
    ) -> [String] {
        let network =
            (["user,id=net0,hostfwd=tcp:127.0.0.1:\(port)-:22"]
            + forwards.sorted(by: { $0.key < $1.key }).map { "hostfwd=tcp:127.0.0.1:\($0.value)-:\($0.key)" }).joined(separator: ",")
        let disk = spec.diskDirectory + "/" + ImageFiles.disk
        var arguments = [
            "-name", "kiln-\(spec.buildID)",
            "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
            "-accel", accelerator.qemuArgument, "-cpu", accelerator.cpu,
            "-smp", String(spec.qemu.cpus), "-m", String(spec.qemu.memoryMiB),
            "-serial", "stdio",
            // cache=unsafe: a throw-away build disk; kiln syncs the guest and fsyncs the file itself.
            "-drive", "file=\(disk),if=virtio,format=qcow2,cache=unsafe,discard=unmap",
            "-netdev", network,
            "-device", "virtio-net-pci,netdev=net0",
            "-device", "virtio-rng-pci",
            "-pidfile", spec.scratchDirectory + "/qemu.pid",
            // systemd (>= 252) writes this credential to /root/.ssh/authorized_keys at boot.
            "-smbios",
            "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root="
                + Data(publicKey.utf8).base64EncodedString(),
        ]
        // A machine with a control socket is one a warm snapshot is saved from or resumed
        // into; only such a machine needs either. The generation ID changes whenever it is
        // resumed, and a guest kernel with the vmgenid driver (Linux >= 5.18, when built in:
        // Debian's cloud kernel has none) reseeds its random number generator from it before
        // anything runs; the handover reseeds it otherwise (QemuProvider+Warm.swift).
        if let qmp { arguments += ["-device", "vmgenid,guid=auto", "-qmp", "unix:\(qmp),server=on,wait=off"] }
        if let kernel = spec.kernel, let initrd = spec.initrd {
            arguments += ["-kernel", kernel, "-initrd", initrd, "-append", kernelCommandLine]
        } else {
            arguments += ["-drive", "file=\(seedPath(spec)),if=virtio,format=raw,readonly=on"]
        }
        return arguments
    }

    /// cloud-init's seed for a disk booted by its own boot loader (``NoCloudSeed``).
    static func seedPath(_ spec: MachineSpec) -> String { spec.scratchDirectory + "/nocloud-seed.iso" }

    /// How to boot a kept disk by hand, with the build's key, SSH on 127.0.0.1:2222.
    public func debugInstructions(_ spec: MachineSpec) -> String {
        let key = spec.scratchDirectory + "/id_ed25519"
        let publicKey = (try? String(contentsOfFile: key + ".pub", encoding: .utf8)) ?? ""
        var arguments = Self.arguments(spec, accelerator: Accelerator.chosen.value ?? .tcg, port: 2222, publicKey: publicKey)
        if let index = arguments.firstIndex(of: "-pidfile") { arguments.removeSubrange(index...index + 1) }
        let boot = ShellQuote.join(["qemu-system-x86_64"] + arguments)
        let ssh = ShellQuote.join(["ssh", "-i", key, "-p", "2222", "-o", "StrictHostKeyChecking=no", "root@127.0.0.1"])
        return "boot it with:\n  \(boot)\nthen log in with:\n  \(ssh)"
    }

    /// Asks the kernel for a free port; QEMU binds it a moment later (a race kiln accepts:
    /// QEMU then fails to start and the build reports it).
    static func freeLoopbackPort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw KilnError(.io, "socket() failed") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { pointer in
                bind(fd, pointer, length) == 0 && getsockname(fd, pointer, &length) == 0
            }
        }
        guard bound else { throw KilnError(.io, "cannot find a free loopback port") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// One running QEMU process and the SSH connection to its guest.
final class QemuMachine: Machine {
    let qemu: Task<ProcessResult, any Error>
    let ssh: SSHCommunicator
    let spec: MachineSpec
    let ports: [Int: Int]
    /// QEMU's control socket, removed with the machine.
    let qmp: String?
    private let exited = Locked(false)

    init(qemu: Task<ProcessResult, any Error>, ssh: SSHCommunicator, spec: MachineSpec, ports: [Int: Int] = [:], qmp: String? = nil) {
        self.qemu = qemu
        self.ssh = ssh
        self.spec = spec
        self.ports = ports
        self.qmp = qmp
        Task { [exited] in
            _ = await qemu.result
            exited.set(true)
        }
    }

    var isRunning: Bool { !exited.value }

    /// Nothing is sent once QEMU is gone: its port may belong to another process by now.
    private func requireRunning() throws {
        guard isRunning else {
            throw KilnError(.providerFailed, "the VM is not running any more (QEMU exited; see the qemu lines in the log)")
        }
    }

    func run(script: String, environment: [EnvVar], title: String, log: BuildLog, timeout: Duration?) async throws -> Int32 {
        try requireRunning()
        let result = try await ssh.run(script: script, environment: environment, timeout: timeout) { log.emit(title, $0.text) }
        if result.status == 255 && !isRunning { throw KilnError(.providerFailed, "the VM stopped while the step ran") }
        return result.status
    }

    func capture(script: String, title: String, log: BuildLog, timeout: Duration?) async throws -> (status: Int32, output: String) {
        try requireRunning()
        return try await ssh.capture(script: script, title: title, log: log, timeout: timeout)
    }

    func upload(source: String, destination: String, contentsOnly: Bool, title: String, log: BuildLog) async throws {
        try requireRunning()
        try await ssh.upload(source: source, destination: destination, contentsOnly: contentsOnly) { log.emit(title, $0.text) }
    }

    func download(source: String, destination: String, title: String, log: BuildLog) async throws {
        try requireRunning()
        try await ssh.download(source: source, destination: destination) { log.emit(title, $0.text) }
    }

    func sshAccess() async throws -> SSHAccess? { try await ssh.access() }

    func forwardedPorts() -> [Int: Int] { ports }

    /// The guest forgets the build's credentials, syncs and remounts its filesystems read-only
    /// (SysRq `u`: a clean filesystem without systemd's slow shutdown under TCG); then kiln stops
    /// QEMU with SIGTERM, on which QEMU flushes and closes the disk and exits 0. Once the guest's
    /// root is read-only and synced there is nothing left for a guest power-off to do.
    func shutdown(log: BuildLog) async throws {
        let seal = """
            # Overwritten before removal: a freed block would keep the key on the disk.
            shred -n 0 -z -u /root/.ssh/authorized_keys 2>/dev/null || true
            # With them, the dbus machine-id and the seed systemd saved at this boot: every
            # instance of the image (and every image resumed from one warm snapshot) would
            # start from the same one. One rm: each program started costs under TCG.
            rm -f /root/.ssh/authorized_keys /etc/ssh/ssh_host_* \(SSHCommunicator.scriptFile) \(SSHCommunicator.stepGroupFile) \(SSHCommunicator.environmentFile) \
              /var/lib/dbus/machine-id /var/lib/systemd/random-seed
            # cloud-init's state of this boot (instance, keys it set up, logs) is not the image's.
            if command -v cloud-init >/dev/null 2>&1; then cloud-init clean --logs >/dev/null 2>&1 || true; fi
            \(QemuProvider.restoreResolver)
            : > /etc/machine-id
            # Blocks this layer wrote and freed again (package lists, caches) leave the overlay.
            fstrim / 2>/dev/null || true
            \(QemuProvider.remountReadOnly)
            root_is_read_only || { echo 'root filesystem is still writable' >&2; exit 1; }
            """
        log.emit("kiln", "removing build credentials and stopping the VM")
        let result: ProcessResult
        do {
            result = try await ssh.client.run(seal, timeout: spec.shutdownTimeout) { line in log.emit("shutdown", line.text) }
        } catch let error as KilnError where error.code == .timeout {
            throw KilnError(
                .timeout, "the guest did not finish its shutdown within \(spec.shutdownTimeout.kilnDescription) (--shutdown-timeout)")
        }
        guard result.succeeded else {
            throw KilnError(.buildFailed, "the guest could not be sealed (exit \(result.status)): \(result.stderr)")
        }
        await ssh.close()
        if isRunning, let text = try? String(contentsOfFile: spec.scratchDirectory + "/qemu.pid", encoding: .utf8),
            let pid = pid_t(text.trimmingCharacters(in: .whitespacesAndNewlines)), pid > 1
        {
            kill(pid, SIGTERM)
        }
        let stopped = await Timeout.wait(for: qemu, atMost: spec.shutdownTimeout)
        if !stopped {
            await destroy()
            throw KilnError(
                .timeout, "QEMU did not stop within \(spec.shutdownTimeout.kilnDescription) (--shutdown-timeout); it was killed")
        }
        if case .success(let result) = await qemu.result, result.status != 0 {
            throw KilnError(.providerFailed, "qemu exited with status \(result.status): \(result.stderr)")
        }
    }

    func destroy() async {
        qemu.cancel()
        _ = await qemu.result
        await ssh.close()
        if let qmp { QemuProvider.removeQMPSocket(qmp) }
    }
}
