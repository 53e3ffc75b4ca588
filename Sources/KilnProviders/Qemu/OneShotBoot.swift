import Foundation
import KilnCore

extension QemuProvider {
    /// Boots `disk` once with `kernel` and `initrd` and a kiln command line (no network, no
    /// SSH) and waits for the guest to power off. A source disk's boot loaders are installed
    /// this way: `init=` on the command line names a script that does the work and powers off.
    ///
    /// - Returns: the guest's console lines.
    /// - Throws: when QEMU fails or outlives `timeout` (it is then killed).
    public static func bootOnce(
        disk: String, format: String, kernel: String, initrd: String, commandLine: String, timeout: Duration, log: BuildLog,
        title: String
    ) async throws -> [String] {
        let accelerator = await Accelerator.choose(log: log)
        let console = Locked<[String]>([])
        let result = try await ProcessRunner.run(
            "qemu-system-x86_64",
            [
                "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
                "-accel", accelerator.qemuArgument, "-cpu", accelerator.cpu, "-smp", "2", "-m", "1024",
                "-serial", "stdio",
                "-drive", "file=\(disk),if=virtio,format=\(format),cache=unsafe",
                "-kernel", kernel, "-initrd", initrd, "-append", commandLine,
            ],
            timeout: timeout
        ) { line in
            if line.stream == .stdout { console.withLock { $0.append(line.text) } }
            log.emit(line.stream == .stdout ? title : "qemu", line.text)
        }
        guard result.succeeded else {
            throw KilnError(.providerFailed, "qemu exited with status \(result.status) (see the qemu lines in the log)")
        }
        return console.value
    }
}
