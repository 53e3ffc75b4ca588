import Foundation
import KilnCore

/// Which QEMU accelerator to use. KVM is chosen only when it can really run a guest: on nested
/// hosts /dev/kvm opens but the CPU lacks vmx/svm, and QEMU then aborts or hangs silently.
struct Accelerator: Sendable {
    let name: String
    let qemuArgument: String
    let cpu: String

    static let tcg = Accelerator(name: "TCG software emulation", qemuArgument: "tcg,thread=multi", cpu: "max")
    static let kvm = Accelerator(name: "KVM", qemuArgument: "kvm", cpu: "host")

    /// The probe's answer for this process: the host does not change between two images.
    static let chosen = Locked<Accelerator?>(nil)

    /// `KILN_ACCEL=kvm|tcg` overrides the probe. The notice is logged by the first build only.
    static func choose(log: BuildLog) async -> Accelerator {
        if let chosen = chosen.value { return chosen }
        let accelerator = await probe(log: log)
        chosen.set(accelerator)
        return accelerator
    }

    private static func probe(log: BuildLog) async -> Accelerator {
        switch ProcessInfo.processInfo.environment["KILN_ACCEL"] {
        case "kvm": return .kvm
        case "tcg": return .tcg
        default: break
        }
        if let reason = kvmUnusableReason() {
            log.emit("kiln", "notice: KVM is not usable here (\(reason)); using TCG software emulation, which is slower")
            return .tcg
        }
        if await probeKVM() { return .kvm }
        log.emit("kiln", "notice: KVM did not run a probe guest; using TCG software emulation, which is slower")
        return .tcg
    }

    /// Cheap checks that already prove KVM cannot work.
    static func kvmUnusableReason() -> String? {
        guard access("/dev/kvm", R_OK | W_OK) == 0 else { return "/dev/kvm is missing or not accessible" }
        let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
        let flags = cpuinfo.split(separator: "\n").first { $0.hasPrefix("flags") } ?? ""
        let words = Set(flags.split(separator: " ").map(String.init))
        guard words.contains("vmx") || words.contains("svm") else {
            return "the CPU has no vmx/svm flag (a nested host)"
        }
        return nil
    }

    /// Starts QEMU with KVM on no guest at all: with working KVM it reaches the firmware and
    /// prints the SeaBIOS banner on the serial port within a second or two.
    static func probeKVM() async -> Bool {
        let spoke = Locked(false)
        // The probe is ended by its timeout either way; what matters is whether the firmware spoke.
        _ = try? await ProcessRunner.run(
            "qemu-system-x86_64",
            ["-accel", "kvm", "-cpu", "host", "-nodefaults", "-display", "none", "-serial", "stdio", "-m", "64"],
            timeout: .seconds(5)
        ) { line in
            if line.text.contains("SeaBIOS") { spoke.set(true) }
        }
        return spoke.value
    }
}
