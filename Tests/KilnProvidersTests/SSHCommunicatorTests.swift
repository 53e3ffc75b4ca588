import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnProviders

/// A stand-in `ssh` in `dir` that appends its arguments, one per line, to `dir/argv`, then runs
/// `then` (shell text; `"$@"` are ssh's arguments).
func standInSSH(in dir: String, then: String = "exit 0") throws -> String {
    let ssh = dir + "/ssh"
    try "#!/bin/sh\nprintf '%s\\n' \"$@\" >> '\(dir)/argv'\n\(then)\n".write(toFile: ssh, atomically: true, encoding: .utf8)
    try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: ssh)
    return ssh
}

/// The communicator with a stand-in `ssh` that records its arguments and runs the remote
/// command here, as the guest's shell would: what a step's environment holds must never be in
/// an argument list (`ps` shows those to every local user, on the host and in the guest).
@Suite("SSH communicator: a step's environment (stand-in ssh, no VM)", .serialized)
struct SSHCommunicatorTests {
    @Test("environment values travel on stdin, not in argv; the step sees them byte for byte; the file holding them is gone")
    func environmentNotInArgv() async throws {
        let dir = NSTemporaryDirectory() + "kiln-ssh-env-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let argv = dir + "/argv"
        // It runs the remote command here, as the guest's shell would.
        let ssh = try standInSSH(in: dir, then: #"while [ "$1" != "--" ]; do shift; done; shift; exec /bin/sh -c "$1""#)
        let secret = "s3cret-\(UUID().uuidString) 'quoted' \"double\" $(touch \(dir)/PWNED)\nsecond line"
        let communicator = SSHCommunicator(
            client: SSHClient(keyPath: dir + "/key", port: 22, program: ssh), scratchDirectory: dir)
        let output = Locked<[String]>([])
        let result = try await communicator.run(
            script: "printf '%s' \"$TOKEN\" > \(dir)/seen; ps -eo args > \(dir)/ps; echo done",
            environment: [EnvVar(name: "TOKEN", value: secret), EnvVar(name: "OTHER", value: "plain")], timeout: .seconds(60)
        ) { line in output.withLock { $0.append(line.text) } }
        #expect(result.status == 0, "\(result.stderr)")
        #expect(output.value == ["done"])
        #expect(try String(contentsOfFile: dir + "/seen", encoding: .utf8) == secret)
        let arguments = try String(contentsOfFile: argv, encoding: .utf8)
        #expect(!arguments.contains("s3cret-"), "\(arguments)")
        // While the step ran, no process anywhere showed the value in its arguments.
        #expect(!(try String(contentsOfFile: dir + "/ps", encoding: .utf8)).contains("s3cret-"))
        #expect(!FileManager.default.fileExists(atPath: SSHCommunicator.environmentFile))
        #expect(!FileManager.default.fileExists(atPath: dir + "/PWNED"))
    }
}

/// A build VM whose QEMU exited: its forwarded port may belong to anyone by now, so nothing
/// more is sent to it (before, a process that took the port received every later step).
@Suite("QEMU gone: nothing is sent to its port (stand-in QEMU and ssh)")
struct QemuGoneTests {
    @Test("after QEMU exits, steps, uploads and downloads fail naming it, and ssh is never started")
    func nothingSent() async throws {
        let dir = NSTemporaryDirectory() + "kiln-qemu-gone-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let argv = dir + "/argv"
        let ssh = try standInSSH(in: dir)
        // The stand-in QEMU: a process that has already exited.
        let qemu = Task { try await ProcessRunner.run("/bin/true", []) }
        _ = await qemu.result
        let communicator = SSHCommunicator(client: SSHClient(keyPath: dir + "/id", port: 2222, program: ssh), scratchDirectory: dir)
        let spec = MachineSpec(
            buildID: "b", diskDirectory: dir, backingDisk: "", scratchDirectory: dir, kernel: nil, initrd: nil,
            settings: .qemu(QemuSettings()))
        let machine = QemuMachine(qemu: qemu, ssh: communicator, spec: spec)
        let deadline = ContinuousClock.now + .seconds(10)
        while machine.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        let log = try BuildLog(path: dir + "/build.log", family: "t", secrets: [], sink: nil)
        await #expect(throws: KilnError.self) {
            _ = try await machine.run(script: "echo secret", environment: [], title: "s", log: log, timeout: nil)
        }
        await #expect(throws: KilnError.self) {
            try await machine.upload(source: dir + "/build.log", destination: "/tmp/x", contentsOnly: false, title: "u", log: log)
        }
        await #expect(throws: KilnError.self) {
            try await machine.download(source: "/etc/hostname", destination: dir + "/h", title: "d", log: log)
        }
        #expect(!FileManager.default.fileExists(atPath: argv), "ssh was started after QEMU exited")
    }

    @Test("kiln's own logins record the guest's host key on first use in the build's known_hosts and require it after")
    func hostKeyPinned() async throws {
        let dir = NSTemporaryDirectory() + "kiln-known-hosts-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let argv = dir + "/argv"
        let ssh = try standInSSH(in: dir)
        let client = SSHClient(keyPath: dir + "/id_ed25519", port: 2222, program: ssh)
        _ = try await client.run("true")
        let arguments = try String(contentsOfFile: argv, encoding: .utf8).split(separator: "\n").map(String.init)
        #expect(arguments.contains("StrictHostKeyChecking=accept-new"))
        #expect(arguments.contains("UserKnownHostsFile=\(dir)/known_hosts"))
        #expect(!arguments.contains("StrictHostKeyChecking=no") && !arguments.contains("UserKnownHostsFile=/dev/null"))
    }
}

@Suite("aws: host keys from the instance's console output")
struct ConsoleHostKeyTests {
    @Test("cloud-init's key block is read (the last complete one); other lines and a half block are not")
    func parse() {
        let console = """
            [   12.3] cloud-init[512]: ssh-ed25519 AAAAnotakeyline
            -----BEGIN SSH HOST KEY KEYS-----
            ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOld root@old
            -----END SSH HOST KEY KEYS-----
            -----BEGIN SSH HOST KEY KEYS-----
            ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY= root@ip-10-0-0-1
            ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINew root@ip-10-0-0-1
            not a key
            -----END SSH HOST KEY KEYS-----
            -----BEGIN SSH HOST KEY KEYS-----
            ssh-ed25519 AAAAhalf
            """
        let keys = ConsoleHostKeys.parse(console)
        #expect(
            keys == ["ecdsa-sha2-nistp256 AAAAE2VjZHNhLXNoYTItbmlzdHAyNTYAAAAIbmlzdHAyNTY=", "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAINew"])
        #expect(ConsoleHostKeys.knownHosts(keys, host: "10.0.0.1").hasPrefix("10.0.0.1 ecdsa-sha2-nistp256 "))
        #expect(ConsoleHostKeys.parse("no keys here").isEmpty)
    }
}
