import Foundation
import KilnCore
import KilnModel

#if canImport(Glibc)
    import Glibc
#endif

/// Warm snapshots on the qemu provider (``WarmSnapshot``, docs/building.md): a build boot on a
/// parent with a matching snapshot resumes it; one without saves one once SSH answers. Either
/// way a failure is a notice and a cold boot, never a failed build.
extension QemuProvider {
    /// What a build boot's warm snapshot is looked up and saved as.
    struct WarmPlan: Sendable {
        let root: String
        let key: String
        let parent: String
        let qemuVersion: String
        var directory: String { root + "/" + key }
    }

    /// nil when the boot cannot be warm: a test boot (a deployment's boot, from firmware), a
    /// disk that boots through its own boot loader, or no warm cache (`--no-warm`).
    func warmPlan(_ spec: MachineSpec, accelerator: Accelerator) async -> WarmPlan? {
        guard let warm = spec.warm, !spec.isTestBoot, spec.kernel != nil,
            let version = try? await WarmSnapshot.qemuVersion()
        else { return nil }
        // The machine's shape without what is the build's own (paths, ports, the key).
        var shape = spec
        (shape.buildID, shape.diskDirectory, shape.scratchDirectory) = ("", "DISK", "SCRATCH")
        (shape.kernel, shape.initrd, shape.ports) = ("KERNEL", "INITRD", [])
        let arguments = Self.arguments(shape, accelerator: accelerator, port: 0, publicKey: "", qmp: "QMP")
        // Under KVM (`-cpu host`) the guest runs on the host's CPU model and features: a
        // snapshot from another CPU or kernel (a shared store, an upgrade) is another key.
        let key = WarmSnapshot.key(parent: warm.parentDigest, qemuVersion: version, machineArguments: arguments + Self.hostSignature())
        return WarmPlan(root: warm.directory, key: key, parent: warm.parentDigest, qemuVersion: version)
    }

    /// The host's CPU model and feature flags, and its kernel release.
    static func hostSignature() -> [String] {
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let lines = cpuinfo.split(separator: "\n")
        let model = lines.first { $0.hasPrefix("model name") }.map(String.init) ?? ""
        let flags = lines.first { $0.hasPrefix("flags") }.map(String.init) ?? ""
        var name = utsname()
        uname(&name)
        let release = withUnsafeBytes(of: &name.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        return [model, flags, release]
    }

    /// The running machine resumed from the plan's snapshot; nil, having said why when there
    /// was one, when the caller is to boot cold. Leaves nothing of the attempt behind. Throws
    /// only when the build is cancelled: an interrupted build does not go on to boot cold.
    func resume(_ spec: MachineSpec, plan: WarmPlan, accelerator: Accelerator, log: BuildLog) async throws -> QemuMachine? {
        let snapshot: WarmSnapshot
        switch WarmSnapshot.open(plan.directory, key: plan.key) {
        case .missing:
            return nil
        case .unusable(let reason):
            log.emit("kiln", "notice: the warm snapshot of this parent is unusable (\(reason)): it is removed, and the VM boots cold")
            try? FileManager.default.removeItem(atPath: plan.directory)
            return nil
        case .found(let found):
            snapshot = found
        }
        do {
            return try await resume(spec, from: snapshot, accelerator: accelerator, log: log)
        } catch {
            try? FileManager.default.removeItem(atPath: spec.diskDirectory + "/" + ImageFiles.disk)
            for name in ["id_ed25519", "id_ed25519.pub", "known_hosts", Self.warmKeyName, Self.warmStateName] {
                try? FileManager.default.removeItem(atPath: spec.scratchDirectory + "/" + name)
            }
            try Task.checkCancellation()
            if let unusable = error as? WarmSnapshot.Unusable {
                log.emit("kiln", "notice: the warm snapshot of this parent is unusable (\(unusable)): it is removed, and the VM boots cold")
            } else {
                log.emit("kiln", "notice: resuming the warm snapshot failed (\(error)): the VM boots cold, and saves a new one")
            }
            try? FileManager.default.removeItem(atPath: plan.directory)
            return nil
        }
    }

    /// The private half of the snapshot's key, and a link to its state, in the build's
    /// scratch directory while they are used.
    static let warmKeyName = "warm_key"
    static let warmStateName = "warm_state"

    private func resume(_ spec: MachineSpec, from snapshot: WarmSnapshot, accelerator: Accelerator, log: BuildLog) async throws
        -> QemuMachine
    {
        let started = ContinuousClock.now
        let fm = FileManager.default
        // The overlay's copy is the build's disk, and QEMU loads the state through a link of
        // its own: both are checked against their digests there, so the bytes used are the
        // bytes checked, whatever happens to the shared entry meanwhile (a prune, a new save).
        let disk = spec.diskDirectory + "/" + ImageFiles.disk
        let state = spec.scratchDirectory + "/" + Self.warmStateName
        let warmKey = spec.scratchDirectory + "/" + Self.warmKeyName
        defer {
            try? fm.removeItem(atPath: warmKey)
            try? fm.removeItem(atPath: state)
        }
        try fm.copyItem(atPath: snapshot.diskPath, toPath: disk)
        chmod(disk, 0o644)
        if link(snapshot.statePath, state) != 0 { try fm.copyItem(atPath: snapshot.statePath, toPath: state) }
        let (stateDigest, diskDigest) = try await blocking {
            (try Hashing.sha256Hex(fileAt: state), try Hashing.sha256Hex(fileAt: disk))
        }
        guard stateDigest == snapshot.manifest.stateSHA256 else {
            throw WarmSnapshot.Unusable(description: "its memory state does not match its digest")
        }
        guard diskDigest == snapshot.manifest.diskSHA256 else {
            throw WarmSnapshot.Unusable(description: "its boot overlay does not match its digest")
        }
        // The overlay stands on the parent's disk and names no other file: a qcow2 header can
        // name any host file as its backing or data file.
        let header = try await DiskImage.info(disk, format: "qcow2")
        guard header.backingFilename == spec.backingDisk, header.dataFile == nil, header.extentFiles.isEmpty else {
            throw WarmSnapshot.Unusable(description: "its boot overlay names another file than the parent's disk")
        }
        try fm.copyItem(atPath: snapshot.keyPath, toPath: warmKey)
        chmod(warmKey, 0o600)
        let publicKey = try await Self.makeKey(spec)
        let port = try Self.freeLoopbackPort()
        let qmp = try Self.qmpSocketPath()
        // The same machine, device for device, as the one saved (its SMBIOS credential too),
        // started to receive the saved state instead of booting.
        let arguments =
            Self.arguments(spec, accelerator: accelerator, port: port, publicKey: snapshot.manifest.publicKey, qmp: qmp)
            + ["-incoming", "exec:cat " + ShellQuote.quote(state)]
        log.emit(
            "kiln",
            "resuming the warm snapshot \(snapshot.manifest.key.prefix(12)) of this parent (\(accelerator.name), \(spec.qemu.cpus) CPUs, \(spec.qemu.memoryMiB) MiB, ssh on 127.0.0.1:\(port))"
        )
        let qemu = Task {
            try await ProcessRunner.run("qemu-system-x86_64", arguments) { line in
                log.emit(line.stream == .stdout ? "console" : "qemu", line.text)
            }
        }
        // The one login with the snapshot's key is the build's master connection: a login
        // costs seconds under TCG, a command over it a fraction of one.
        var client = SSHClient(keyPath: spec.scratchDirectory + "/id_ed25519", port: port, probeWait: SSHClient.noProbe)
        client.masterKeyPath = warmKey
        let ssh = SSHCommunicator(client: client, scratchDirectory: spec.scratchDirectory, prelude: Self.prepareResolver)
        let machine = QemuMachine(qemu: qemu, ssh: ssh, spec: spec, qmp: qmp)
        // The whole resume is bounded as a boot is (--boot-timeout).
        let deadline = started + spec.bootTimeout
        let limit = spec.bootTimeout.kilnDescription
        do {
            // Stopping QEMU closes its socket: a cancelled build's wait ends there.
            let loaded = try await withTaskCancellationHandler {
                try await blocking {
                    let connection = try QMPConnection(path: qmp, timeout: .seconds(20))
                    // `inmigrate` while the state loads; `paused` once it has (it was saved paused).
                    while try connection.status() != "paused" {
                        guard ContinuousClock.now < deadline else { throw KilnError(.timeout, "its state did not load within \(limit)") }
                        usleep(20_000)
                    }
                    let loaded = ContinuousClock.now - started
                    try connection.execute("cont")
                    return loaded
                }
            } onCancel: {
                qemu.cancel()
            }
            try await ssh.connect(deadline: deadline, isAlive: { [machine] in machine.isRunning })
            let loggedIn = ContinuousClock.now - started
            // The snapshot's key logged in once; the build's own key replaces it, and every
            // later login (a reconnect, ansible, a person at a breakpoint) uses the build's key.
            // The new line is written over the old one in place, padded with spaces to its
            // length: the file keeps its block, so the old key's bytes are not left in a
            // freed block of the image (the seal zeroes and removes the file). Shell builtins
            // only (the length counted by `read`): a program started in a just-resumed guest
            // costs a translation of its code under TCG. The guest's clock, stopped at the
            // save, is set to the host's, and its random number generator reseeded
            // (``reseedRandom``) before the build runs anything.
            let handover = try await ssh.client.run(
                """
                set -e
                \(Self.reseedRandom)
                f=/root/.ssh/authorized_keys
                length=0
                if [ -f "$f" ]; then
                  while IFS= read -r line || [ -n "$line" ]; do length=$((length + ${#line} + 1)); done < "$f"
                fi
                [ "$length" -gt 1 ] || length=2
                printf "%-$((length - 1))s\\n" \(ShellQuote.quote(publicKey.trimmingCharacters(in: .whitespacesAndNewlines))) 1<> "$f"
                date -u -s @\(String(format: "%.3f", Date().timeIntervalSince1970)) >/dev/null
                """, input: .data(Data((0..<Self.reseedBytes).map { _ in UInt8.random(in: .min ... .max) })),
                timeout: max(deadline - ContinuousClock.now, .seconds(1)))
            guard handover.succeeded else {
                throw KilnError(
                    .providerFailed,
                    "the guest did not take the build's key, clock and random seed (exit \(handover.status)): \(handover.stderr.trimmingCharacters(in: .whitespacesAndNewlines))"
                )
            }
            snapshot.touch()
            let reseeded = handover.stdout.contains("vmgenid") ? "its vmgenid driver" : "the host's bytes"
            log.emit(
                "kiln",
                "SSH is up after \((ContinuousClock.now - started).kilnDescription), resumed from the warm snapshot (state loaded in \(loaded.kilnDescription), logged in after \(loggedIn.kilnDescription)); the snapshot's key is replaced by the build's own, the guest's random number generator reseeded from \(reseeded)"
            )
            return machine
        } catch {
            await machine.destroy()
            throw error
        }
    }

    /// Shell (POSIX sh) that leaves a just-resumed guest's random number generator (CRNG) in a
    /// state no sibling resumed from the same snapshot shares, before the build runs anything:
    /// each resumed guest starts with the snapshot's, and Linux reseeds it by itself only
    /// from time to time. A kernel whose vmgenid driver is bound to the machine's device has
    /// reseeded on the resume, from the new generation ID (the script prints "vmgenid").
    /// Otherwise (Debian's cloud kernel builds no vmgenid driver) the ``reseedBytes`` bytes of
    /// the host's randomness on standard input go into the kernel's input pool and the CRNG is
    /// reseeded from it at once with the RNDRESEEDCRNG ioctl (Linux >= 4.17, root). On standard
    /// input, not in the command: a command line is readable by every local user of the host
    /// (`ps`) while ssh runs. The ioctl needs a program: perl, which every Debian system has
    /// (perl-base is essential). A guest without it fails the handover, and so the resume: the
    /// build boots cold. The one login before this (the handover's own) is the only session
    /// drawn from the snapshot's CRNG; nothing secret passes over it (the build's public key,
    /// the time).
    static let reseedRandom = """
        if [ -e /sys/bus/acpi/drivers/vmgenid/QEMUVGID:00 ]; then
          echo vmgenid
        else
          command -v perl >/dev/null || { echo "no vmgenid driver and no perl to reseed the random number generator with" >&2; exit 1; }
          perl -e 'binmode STDIN; read(STDIN, my $seed, \(reseedBytes)) == \(reseedBytes) or die "no seed on standard input\\n"; open(my $r, ">", "/dev/urandom") or die "/dev/urandom: $!\\n"; syswrite($r, $seed) == \(reseedBytes) or die "/dev/urandom: $!\\n"; ioctl($r, 0x5207, 0) or die "cannot reseed the random number generator (RNDRESEEDCRNG): $!\\n"'
        fi
        """
    static let reseedBytes = 64

    /// Saves the cold-booted guest as the plan's snapshot; a failure is a warning, unless the
    /// guest could not be run again (``WarmSnapshot/StillPaused``), or the build was cancelled.
    func saveWarm(_ plan: WarmPlan, spec: MachineSpec, qmp: String, publicKey: String, accelerator: Accelerator, log: BuildLog)
        async throws
    {
        // The state takes up to the guest's memory: not where it would leave the build short.
        var volume = statvfs()
        if statvfs(plan.root.isEmpty ? "/" : (plan.root as NSString).deletingLastPathComponent, &volume) == 0 {
            let free = UInt64(volume.f_bavail) * UInt64(volume.f_frsize)
            let needed = UInt64(spec.qemu.memoryMiB + 1024) << 20
            if free < needed {
                log.emit(
                    "kiln",
                    "notice: no warm snapshot saved: \(free >> 20) MiB free where the cache is, a snapshot may take \(needed >> 20) MiB with room to spare"
                )
                return
            }
        }
        let manifest = WarmSnapshot.Manifest(
            format: WarmSnapshot.format, key: plan.key, parent: plan.parent, qemu: plan.qemuVersion, accelerator: accelerator.name,
            cpus: spec.qemu.cpus, memoryMiB: spec.qemu.memoryMiB, created: Date(), stateSHA256: "", diskSHA256: "",
            publicKey: publicKey, pausedSeconds: 0, saveSeconds: 0)
        do {
            let (paused, total) = try await WarmSnapshot.save(
                qmp: qmp, key: plan.key, root: plan.root, manifest: manifest, disk: spec.diskDirectory + "/" + ImageFiles.disk,
                privateKey: spec.scratchDirectory + "/id_ed25519", buildID: spec.buildID)
            log.emit(
                "kiln",
                "warm snapshot saved in \(total.kilnDescription) (the guest paused for \(paused.kilnDescription)): the next build on this parent resumes it instead of booting"
            )
        } catch let error as WarmSnapshot.StillPaused {
            throw KilnError(.providerFailed, "\(error)")
        } catch {
            try Task.checkCancellation()
            log.emit("kiln", "warning: no warm snapshot was saved (\(error)); the next build on this parent boots cold too")
        }
    }

    /// QEMU's control socket: short, in the temporary directory, as a Unix socket path holds
    /// at most 107 bytes and the store's scratch directory can be deeper than that. In a
    /// directory of its own, mode 0700: whoever can connect to it commands QEMU (a `migrate`
    /// to `exec:` runs a shell command as kiln's user), and QEMU creates the socket with the
    /// process's umask, which may let a group write it.
    static func qmpSocketPath() throws -> String {
        var template = Array((NSTemporaryDirectory() + "kiln-qmp-XXXXXX").utf8CString)
        guard let made = mkdtemp(&template) else {
            throw KilnError(.io, "cannot create a directory for QEMU's control socket: \(String(cString: strerror(errno)))")
        }
        return String(cString: made) + "/qmp.sock"
    }

    /// Removes the socket ``qmpSocketPath()`` made and its directory.
    static func removeQMPSocket(_ path: String) {
        unlink(path)
        rmdir((path as NSString).deletingLastPathComponent)
    }

    /// The build's own key pair, in its scratch directory; returns the public half.
    static func makeKey(_ spec: MachineSpec) async throws -> String {
        let key = spec.scratchDirectory + "/id_ed25519"
        try await ProcessRunner.check(
            "ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "kiln-\(spec.isTestBoot ? "test" : "build")-\(spec.buildID)", "-f", key])
        return try String(contentsOfFile: key + ".pub", encoding: .utf8)
    }
}
