import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnProviders

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
        let ssh = dir + "/ssh"
        try """
        #!/bin/sh
        printf '%s\\n' "$@" >> '\(argv)'
        while [ "$1" != "--" ]; do shift; done
        shift
        exec /bin/sh -c "$1"
        """.write(toFile: ssh, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: ssh)
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
