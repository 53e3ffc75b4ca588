import Foundation
import KilnCore
import KilnTestSupport
import Testing

/// A VM started the way a hypervisor or cloud starts an image: plain `qemu-system-x86_64`,
/// firmware first (SeaBIOS, QEMU's default, or OVMF from Debian's `ovmf`), no `-kernel`,
/// `-initrd` or `-append`. Its root key arrives as a systemd credential (SMBIOS type 11, as
/// libvirt and OpenStack can pass one) or through a NoCloud seed the caller attaches.
/// Port 22 and 80 are forwarded to loopback ports.
final class FirmwareVM: Sendable {
    enum Firmware: String, Sendable { case seabios, ovmf }

    let disk: String
    let sshPort: Int
    let httpPort: Int
    let key: String
    /// Who logs in: root (the credential), or the default user a cloud-init seed sets up.
    let user: String
    let console: String
    private let qemu: Task<ProcessResult, any Error>

    /// - Parameter credential: deliver the key as a systemd credential (else only `extraDrives`,
    ///   a NoCloud seed say, can carry it).
    init(
        disk: String, format: String = "qcow2", firmware: Firmware, key: String, user: String = "root", credential: Bool = true,
        extraDrives: [String] = []
    ) async throws {
        self.disk = disk
        self.key = key
        self.user = user
        sshPort = try LocalRegistry.freePort()
        httpPort = try LocalRegistry.freePort()
        console = disk + ".console"
        var arguments = [
            "-machine", "q35", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", "2", "-m", "1024",
            "-nodefaults", "-display", "none", "-serial", "file:\(console)",
            "-drive", "file=\(disk),if=virtio,format=\(format)",
            "-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:\(sshPort)-:22,hostfwd=tcp:127.0.0.1:\(httpPort)-:80",
            "-device", "virtio-net-pci,netdev=n0",
        ]
        if firmware == .ovmf {
            let variables = disk + ".OVMF_VARS.fd"
            try? FileManager.default.removeItem(atPath: variables)
            try FileManager.default.copyItem(atPath: "/usr/share/OVMF/OVMF_VARS_4M.fd", toPath: variables)
            arguments += [
                "-drive", "if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd",
                "-drive", "if=pflash,format=raw,unit=1,file=\(variables)",
            ]
        }
        if credential {
            let publicKey = try String(contentsOfFile: key + ".pub", encoding: .utf8)
            arguments += [
                "-smbios",
                "type=11,value=io.systemd.credential.binary:ssh.authorized_keys.root=" + Data(publicKey.utf8).base64EncodedString(),
            ]
        }
        for drive in extraDrives { arguments += ["-drive", drive] }
        qemu = Task { [arguments] in try await ProcessRunner.run("qemu-system-x86_64", arguments) }
    }

    static func makeKey(in directory: String) async throws -> String {
        let key = directory + "/id_ed25519"
        try await ProcessRunner.check("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", key])
        return key
    }

    /// Waits until a login works; the console is in the failure message.
    func waitForSSH(timeout: Duration = .seconds(420)) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if let result = try? await ssh("true", timeout: .seconds(20)), result.status == 0 { return }
            try await Task.sleep(for: .seconds(2))
        }
        let text = (try? String(contentsOfFile: console, encoding: .utf8)) ?? ""
        Issue.record("no SSH login within \(timeout) (\(disk)); console tail:\n\(text.suffix(3000))")
        throw KilnError(.timeout, "no SSH")
    }

    func ssh(_ command: String, timeout: Duration = .seconds(120)) async throws -> ProcessResult {
        try await ProcessRunner.run(
            "ssh",
            [
                "-i", key, "-p", String(sshPort), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=no",
                "-o", "UserKnownHostsFile=/dev/null", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR", "\(user)@127.0.0.1", command,
            ], timeout: timeout)
    }

    /// What one boot says about itself, read inside the guest and, for the site, from the host.
    struct Facts: Sendable {
        var nginx: String
        var site: String
        var rootBytes: Int64
        var machineID: String
        var hostKey: String
    }

    func facts() async throws -> Facts {
        func run(_ command: String) async throws -> String {
            let result = try await ssh(command)
            #expect(result.status == 0, "\(command): \(result.stderr)")
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        // The first boot's units (root growth, host key) are done once the system is up.
        _ = try? await ssh("systemctl is-system-running --wait", timeout: .seconds(300))
        let site = try await ProcessRunner.run("curl", ["-s", "--max-time", "30", "http://127.0.0.1:\(httpPort)/"])
        return Facts(
            nginx: try await run("systemctl is-active nginx"), site: site.stdout,
            rootBytes: Int64(try await run("df -B1 --output=size / | tail -1")) ?? 0,
            machineID: try await run("cat /etc/machine-id"),
            hostKey: try await run("cut -d' ' -f1,2 /etc/ssh/ssh_host_ed25519_key.pub"))
    }

    func stop() async {
        qemu.cancel()
        _ = await qemu.result
    }
}
