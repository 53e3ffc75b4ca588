import Foundation
import KilnCore
import KilnModel

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real OCI registry (Debian's `docker-registry`, the distribution project's server) on
/// loopback, with its storage in a temporary directory, for as long as a test needs it.
///
/// An ``OrphanGuard`` ends it if the test process dies before ``stop()``: no registry outlives the tests.
public final class LocalRegistry {
    /// `127.0.0.1:PORT`: the host part of a reference.
    public let host: String
    public let port: Int
    public let directory: String
    /// The registry's stdout and stderr: one line per request (`"POST /v2/…/blobs/uploads/ HTTP/1.1" 202`).
    public let logPath: String
    private let process: Process
    private let guardian: OrphanGuard

    /// Starts one and waits until `GET /v2/` answers. Fails (never skips) when the package is missing.
    /// - Parameter deletes: whether the registry allows deleting manifests (docker-registry's default is no).
    public static func start(deletes: Bool = true) async throws -> LocalRegistry {
        let executable = "/usr/bin/docker-registry"
        guard FileManager.default.isExecutableFile(atPath: executable) else {
            throw KilnError(
                .notFound, "\(executable) is missing: install the docker-registry package (make test-deps does)")
        }
        var lastError: (any Error)?
        // A port found free can be taken before the registry binds it: try another.
        for _ in 0..<3 {
            do { return try await LocalRegistry(executable: executable, port: try freePort(), deletes: deletes) } catch {
                lastError = error
            }
        }
        throw lastError ?? KilnError(.io, "cannot start docker-registry")
    }

    private init(executable: String, port: Int, deletes: Bool) async throws {
        self.port = port
        host = "127.0.0.1:\(port)"
        directory = NSTemporaryDirectory() + "kiln-registry-" + UUID().uuidString
        logPath = directory + "/registry.log"
        try FileManager.default.createDirectory(atPath: directory + "/storage", withIntermediateDirectories: true)
        let config = """
            version: 0.1
            log:
              level: info
              formatter: text
            storage:
              filesystem:
                rootdirectory: \(directory)/storage
              delete:
                enabled: \(deletes)
            http:
              addr: 127.0.0.1:\(port)

            """
        try config.write(toFile: directory + "/config.yml", atomically: true, encoding: .utf8)
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["serve", directory + "/config.yml"]
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guardian = try OrphanGuard(pid: process.processIdentifier)
        var ready = false
        let deadline = Date().addingTimeInterval(20)
        while Date() < deadline && process.isRunning {
            if await Self.answers(URL(string: "http://127.0.0.1:\(port)/v2/")!) {
                ready = true
                break
            }
            try await Task.sleep(for: .milliseconds(50))
        }
        guard ready else {
            stop()
            let tail = ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
                .split(separator: "\n").suffix(10).joined(separator: "\n")
            throw KilnError(.io, "docker-registry did not answer on 127.0.0.1:\(port):\n\(tail)")
        }
    }

    /// SIGTERM to the registry, and waits until it is gone. Safe to call twice.
    public func stop() {
        guardian.disarm()
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Stops it and removes its storage.
    public func remove() {
        stop()
        try? FileManager.default.removeItem(atPath: directory)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// The registry's access-log lines for requests of `method` whose path contains `path`.
    public func requests(_ method: String, containing path: String) -> [Substring] {
        log.split(separator: "\n").filter { $0.contains("\"\(method) ") && $0.contains(path) && $0.contains(" HTTP/") }
    }

    private static func answers(_ url: URL) async -> Bool {
        var request = URLRequest(url: url)
        request.timeoutInterval = 2
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return false }
        return (response as? HTTPURLResponse)?.statusCode == 200
    }

    /// A TCP port nothing listens on now (the kernel's pick for port 0).
    public static func freePort() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw KilnError(.io, "socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = 0
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { raw in
                bind(fd, raw, length) == 0 && getsockname(fd, raw, &length) == 0
            }
        }
        guard bound else { throw KilnError(.io, "bind: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }
}

/// Tests/KilnExportTests/Fixtures/token_proxy.py in front of a registry: Bearer or Basic auth,
/// and faults on demand (``setFaults(_:)``).
public final class AuthProxy: @unchecked Sendable {
    let fixture: FixtureScript
    /// The file the proxy reads its faults from, on every request.
    public let faultsPath: String

    public init(upstream: LocalRegistry, user: String, password: String, mode: String) throws {
        faultsPath = upstream.directory + "/proxy-\(mode).faults"
        FileManager.default.createFile(atPath: faultsPath, contents: nil)
        fixture = try FixtureScript(
            KilnBinary.repositoryRoot + "/Tests/KilnExportTests/Fixtures/token_proxy.py",
            arguments: [String(upstream.port), upstream.directory + "/proxy-\(mode).port", user, password, mode, faultsPath],
            portFile: upstream.directory + "/proxy-\(mode).port", logPath: upstream.directory + "/proxy-\(mode).log")
    }

    public var port: Int { fixture.port }
    public var host: String { "127.0.0.1:\(port)" }
    public var log: String { fixture.log }

    /// Faults for the requests from now on, one word each: `corrupt-blobs` (a blob's bytes
    /// changed, its length kept), `cut-blobs-once` (the first answer to each blob GET stops
    /// half-way and the connection closes), `fail-ranges-from=N` (a blob GET for a range that
    /// starts at or after byte N gets HTTP 500).
    public func setFaults(_ faults: [String]) throws {
        try faults.joined(separator: "\n").write(toFile: faultsPath, atomically: true, encoding: .utf8)
    }

    public func stop() { fixture.stop() }
}

/// Ends a child of the test process if the test process dies first (a crash, a kill, a timeout),
/// so servers started for a test never outlive it: a shell waits on a pipe whose write end only
/// this process holds, and end-of-file means this process is gone.
public final class OrphanGuard {
    private let shell = Process()
    private let pipe = Pipe()

    public init(pid: Int32) throws {
        shell.executableURL = URL(fileURLWithPath: "/bin/sh")
        // TERM, then KILL: children of Foundation's Process may start with SIGTERM blocked.
        shell.arguments = [
            "-c", "read -r _ || true; kill -TERM \"$1\" 2>/dev/null; sleep 2; kill -KILL \"$1\" 2>/dev/null", "sh",
            String(pid),
        ]
        shell.standardInput = pipe
        try shell.run()
        try pipe.fileHandleForReading.close()
    }

    /// The test stops the child itself: the guard goes first, so it never signals a reused pid.
    public func disarm() {
        if shell.isRunning { kill(shell.processIdentifier, SIGKILL) }
        shell.waitUntilExit()
        try? pipe.fileHandleForWriting.close()
    }
}

/// The path of a tool the tests need, or an error that says which package to install: a
/// missing tool fails the test instead of skipping it, so CI cannot pass without it.
public func requiredTool(_ name: String, package: String? = nil) throws -> String {
    guard let path = ProcessRunner.find(name) else {
        throw KilnError(.notFound, "\(name) is not on PATH: install the \(package ?? name) package (make test-deps does)")
    }
    return path
}

/// A fixture server script (a Python proxy in a test target's Fixtures/) run with python3 on
/// loopback: it writes its port to `portFile` once it listens; its output goes to `logPath`.
/// An ``OrphanGuard`` ends it if the test process dies before ``stop()``.
public final class FixtureScript: @unchecked Sendable {
    public let port: Int
    public let logPath: String
    private let process = Process()
    private let guardian: OrphanGuard

    public init(_ script: String, arguments: [String], portFile: String, logPath: String) throws {
        self.logPath = logPath
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: try requiredTool("python3"))
        process.arguments = [script] + arguments
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guardian = try OrphanGuard(pid: process.processIdentifier)
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: portFile) && Date() < deadline && process.isRunning {
            usleep(20_000)
        }
        port = Int((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "") ?? 0
        try? FileManager.default.removeItem(atPath: portFile)
        if port == 0 {
            stop()
            throw KilnError(.io, "\((script as NSString).lastPathComponent) did not start: \(self.log)")
        }
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Safe to call twice.
    public func stop() {
        guardian.disarm()
        // SIGKILL: Foundation's Process starts children with most signals blocked, SIGTERM included.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }
}
