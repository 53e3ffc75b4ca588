import Foundation
import KilnCore
import KilnModel

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A real `moto_server` (moto's in-memory AWS: EC2 and the rest) on loopback, for the aws
/// provider's tests.
///
/// An ``OrphanGuard`` ends it if the test process dies before ``stop()``: no server outlives the tests.
/// Unchecked Sendable: the process is only signalled by ``stop()``, which its owner calls once.
public final class MotoServer: @unchecked Sendable {
    public let port: Int
    /// moto's request log and the tracebacks of the actions it does not implement.
    public let logPath: String
    private let process: Process
    private let guardian: OrphanGuard

    /// `http://127.0.0.1:PORT`: what `AWS_ENDPOINT_URL` would be.
    public var endpoint: URL { URL(string: "http://127.0.0.1:\(port)")! }

    /// Starts one and waits until it answers HTTP. Fails (never skips) when moto is missing.
    public static func start() async throws -> MotoServer {
        guard let executable = ProcessRunner.find("moto_server") else {
            throw KilnError(.notFound, "moto_server is not on PATH: install moto[server] (make test-deps does)")
        }
        var lastError: (any Error)?
        // A port found free can be taken before moto binds it: try another.
        for _ in 0..<3 {
            do { return try await MotoServer(executable: executable, port: try LocalRegistry.freePort()) } catch {
                lastError = error
            }
        }
        throw lastError ?? KilnError(.io, "cannot start moto_server")
    }

    private init(executable: String, port: Int) async throws {
        self.port = port
        logPath = NSTemporaryDirectory() + "kiln-moto-\(port)-" + UUID().uuidString + ".log"
        _ = FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = ["-H", "127.0.0.1", "-p", String(port)]
        // As strict as EC2: by default moto launches from image ids and key names it does not know.
        process.environment = ProcessInfo.processInfo.environment.merging([
            "MOTO_ENABLE_AMI_VALIDATION": "true", "MOTO_ENABLE_KEYPAIR_VALIDATION": "true",
        ]) { $1 }
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guardian = try OrphanGuard(pid: process.processIdentifier)
        var ready = false
        // moto imports botocore's models first: seconds on a busy machine.
        let deadline = Date().addingTimeInterval(60)
        while Date() < deadline && process.isRunning {
            if await Self.answers(endpoint.appendingPathComponent("moto-api/config")) {
                ready = true
                break
            }
            try await Task.sleep(for: .milliseconds(100))
        }
        guard ready else {
            let exited = !process.isRunning
            stop()
            let tail = ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "")
                .split(separator: "\n").suffix(10).joined(separator: "\n")
            // A pyenv shim stays on PATH after its package is gone, and fails only when run.
            let hint = exited ? " (it exited: install moto[server], make test-deps does)" : ""
            throw KilnError(.io, "moto_server did not answer on 127.0.0.1:\(port)\(hint):\n\(tail)")
        }
    }

    /// Ends the server and waits until it is gone. Safe to call twice.
    public func stop() {
        guardian.disarm()
        // SIGKILL: moto keeps nothing worth a clean exit, and Foundation's Process starts
        // children with SIGTERM blocked.
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Stops it and removes its log.
    public func remove() {
        stop()
        try? FileManager.default.removeItem(atPath: logPath)
    }

    public var log: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    /// Whether the log has `text` within `timeout`: moto may log a request's traceback after answering it.
    public func logContains(_ text: String, within timeout: Duration = .seconds(5)) async -> Bool {
        let deadline = ContinuousClock.now + timeout
        while !log.contains(text) {
            guard ContinuousClock.now < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(50))
        }
        return true
    }

    /// Turns on moto's authentication (IAM users, policies, and each request's SigV4 signature
    /// recomputed with botocore) after `count` more requests, which can make the user and its key.
    /// Server-wide: only for a server of the test's own.
    public func enableAuthentication(after count: Int) async throws {
        var request = URLRequest(url: endpoint.appendingPathComponent("moto-api/reset-auth"))
        request.httpMethod = "POST"
        request.httpBody = Data(String(count).utf8)
        // Not the form type URLSession would send: Werkzeug would take the body as a form and leave moto nothing.
        request.setValue("text/plain", forHTTPHeaderField: "Content-Type")
        let (data, response) = try await URLSession.shared.data(for: request)
        guard (response as? HTTPURLResponse)?.statusCode == 200 else {
            throw KilnError(.io, "moto_server refused reset-auth: \(String(decoding: data, as: UTF8.self))")
        }
    }

    /// moto's own API, which no authentication setting counts or checks.
    private static func answers(_ url: URL) async -> Bool {
        var request = URLRequest(url: url)
        request.timeoutInterval = 2
        guard let (_, response) = try? await URLSession.shared.data(for: request) else { return false }
        return response is HTTPURLResponse
    }

    /// The server of the suite running this test (the `.motoServer` suite trait of KilnProvidersTests sets it).
    @TaskLocal public static var suiteServer: MotoServer?

    /// The suite's server, or an error that says to mark the suite.
    public static func current() throws -> MotoServer {
        guard let server = suiteServer else {
            throw KilnError(.internalError, "no moto_server here: mark the suite @Suite(.motoServer)")
        }
        return server
    }
}
