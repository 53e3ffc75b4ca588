import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnProviders

#if canImport(Glibc)
    import Glibc
#endif

/// A loopback listener that answers each connection with `greeting` (nothing when nil), the
/// way sshd, or QEMU's forwarder before the guest has an address, would.
final class Listener: @unchecked Sendable {
    let fd: Int32
    let port: Int

    /// - Parameter delay: how long each connection waits before the greeting (a guest whose
    ///   address comes up while the connection is held by QEMU's forwarder).
    init(greeting: String?, delay: TimeInterval = 0) throws {
        fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let fd = self.fd
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(fd, $0, length) == 0 && listen(fd, 4) == 0 && getsockname(fd, $0, &length) == 0
            }
        }
        guard ok else { throw POSIXError(.EADDRNOTAVAIL) }
        port = Int(UInt16(bigEndian: address.sin_port))
        Thread.detachNewThread {
            while true {
                let client = accept(fd, nil, nil)
                guard client >= 0 else { return }
                if delay > 0 { Thread.sleep(forTimeInterval: delay) }
                if let greeting { _ = greeting.withCString { send(client, $0, strlen($0), 0) } }
                Thread.sleep(forTimeInterval: 0.5)
                close(client)
            }
        }
    }

    deinit { shutdown(fd, Int32(SHUT_RDWR)); close(fd) }
}

@Suite("SSH readiness probe")
struct SSHProbeTests {
    @Test("an SSH identification string on the port means sshd answers")
    func bannerAnswers() throws {
        let listener = try Listener(greeting: "SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        #expect(SSHClient.bannerAnswers(port: listener.port))
    }

    @Test("a port that accepts but stays silent (QEMU's forwarder, guest not up) is not ready, within the probe's 300 ms")
    func silentPortIsNotReady() throws {
        let listener = try Listener(greeting: nil)
        let started = ContinuousClock.now
        #expect(!SSHClient.bannerAnswers(port: listener.port))
        // A read without the timeout would hang; the margin is for CI, where the fast tests run
        // in parallel beside QEMU on two cores.
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("the readiness probe holds one connection while it waits: a banner that comes late on it counts; a stop ends the wait")
    func heldConnection() throws {
        // The boot's probe waits long enough; the default 300 ms does not (a new connection
        // every probe is what queued dozens of SYNs for a guest still without an address).
        let late = try Listener(greeting: "SSH-2.0-OpenSSH_9.2p1 Debian\r\n", delay: 1.5)
        #expect(SSHClient.bannerAnswers(port: late.port, wait: SSHClient.heldProbeWait))
        // The short probe against a banner 8 s late: a stall of the test's thread between
        // connect and poll (CI runs QEMU beside it on two cores) once let a 1.5 s banner arrive
        // before the 300 ms poll began, so the margin is wide.
        let later = try Listener(greeting: "SSH-2.0-OpenSSH_9.2p1 Debian\r\n", delay: 8)
        #expect(!SSHClient.bannerAnswers(port: later.port))
        // Holds each connection 10 s before closing it: only the stop can end the wait sooner.
        let silent = try Listener(greeting: nil, delay: 10)
        let started = ContinuousClock.now
        #expect(!SSHClient.bannerAnswers(port: silent.port, wait: 60_000, stop: { ContinuousClock.now - started > .milliseconds(500) }))
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("something else than sshd on the port, or nothing at all, is not ready")
    func otherServiceOrClosedPort() throws {
        let http = try Listener(greeting: "HTTP/1.1 400 Bad Request\r\n")
        #expect(!SSHClient.bannerAnswers(port: http.port))
        let closedPort = http.port
        _ = consume http
        #expect(!SSHClient.bannerAnswers(port: closedPort))
    }

    @Test("sshd that answers but never lets the key in times out with the login's own error, not a boot error")
    func loginFailureIsNamed() async throws {
        let listener = try Listener(greeting: "SSH-2.0-OpenSSH_9.2p1 Debian\r\n")
        let client = SSHClient(keyPath: "/nonexistent/id_ed25519", port: listener.port)
        let error = await #expect(throws: KilnError.self) {
            // Long enough for ssh to start and complain even on a loaded machine.
            _ = try await client.connectMaster(deadline: .now + .seconds(6)) { true }
        }
        #expect(error?.code == .timeout)
        #expect(error?.message.hasPrefix("sshd answered, but the login failed: ") == true, "\(String(describing: error))")
    }

    @Test("the master connection's socket path fits a Unix socket address whatever the store path")
    func controlPathIsShort() {
        let client = SSHClient(keyPath: "/" + String(repeating: "deep/", count: 40) + "id_ed25519", port: 2222)
        #expect(client.controlPath.utf8.count < 108)
    }
}
