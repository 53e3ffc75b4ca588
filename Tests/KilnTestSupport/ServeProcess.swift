import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// `kiln serve` run as a user runs it, on a free loopback port (`--listen 127.0.0.1:0`), and
/// a client for it. An ``OrphanGuard`` ends it if the test process dies first.
public final class ServeProcess: @unchecked Sendable {
    public let base: String
    public let logPath: String
    private let process = Process()
    private let guardian: OrphanGuard

    public init(
        home: String, catalog: String? = nil, listen: String = "127.0.0.1:0", environment: [String: String] = [:], arguments: [String] = []
    ) throws {
        logPath = NSTemporaryDirectory() + "kiln-serve-" + UUID().uuidString + ".log"
        FileManager.default.createFile(atPath: logPath, contents: nil)
        let log = try FileHandle(forWritingTo: URL(fileURLWithPath: logPath))
        defer { try? log.close() }
        process.executableURL = URL(fileURLWithPath: KilnBinary.path)
        process.arguments = ["serve", "--home", home, "--listen", listen] + (catalog.map { ["--catalog", $0] } ?? []) + arguments
        var env = ProcessInfo.processInfo.environment.filter { !OwnSecrets.isWithheld($0.key) }
        env.merge(environment) { $1 }
        process.environment = env
        process.standardOutput = log
        process.standardError = log
        try process.run()
        guardian = try OrphanGuard(pid: process.processIdentifier)
        let deadline = Date().addingTimeInterval(20)
        var found: String?
        while found == nil, Date() < deadline, process.isRunning {
            usleep(20_000)
            let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            if let range = text.range(of: #"listening on (http://[^ ]+)/"#, options: .regularExpression) {
                found = String(text[range].dropFirst("listening on ".count).dropLast())
            }
        }
        guard let found else {
            let output = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
            guardian.disarm()
            if process.isRunning { kill(process.processIdentifier, SIGKILL) }
            process.waitUntilExit()
            throw KilnError(.io, "kiln serve did not start: \(output)")
        }
        base = found
    }

    public var output: String { (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "" }

    public struct Answer: Sendable {
        public var status: Int
        public var headers: [String: String]
        public var body: String

        public func header(_ name: String) -> String? {
            headers.first { $0.key.lowercased() == name.lowercased() }?.value
        }
    }

    /// `method` on `path` (with its query); no redirects followed.
    public func request(_ path: String, method: String = "GET", headers: [String: String] = [:], body: Data? = nil) async throws -> Answer {
        try await Self.request(base + path, method: method, headers: headers, body: body)
    }

    /// `method` on a whole URL; no redirects followed.
    public static func request(_ url: String, method: String = "GET", headers: [String: String] = [:], body: Data? = nil) async throws
        -> Answer
    {
        var request = URLRequest(url: URL(string: url)!)
        request.httpMethod = method
        request.httpBody = body
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        let (data, response) = try await URLSession(configuration: .ephemeral, delegate: NoRedirects(), delegateQueue: nil).data(
            for: request)
        let http = response as! HTTPURLResponse
        var fields: [String: String] = [:]
        for (key, value) in http.allHeaderFields { fields["\(key)"] = "\(value)" }
        return Answer(status: http.statusCode, headers: fields, body: String(decoding: data, as: UTF8.self))
    }

    public func get(_ path: String, headers: [String: String] = [:]) async throws -> Answer {
        try await request(path, headers: headers)
    }

    public var isRunning: Bool { process.isRunning }

    /// SIGTERM, as a service manager stops it; the exit status. Safe to call twice.
    @discardableResult
    public func stop() -> Int32 {
        guardian.disarm()
        if process.isRunning { kill(process.processIdentifier, SIGTERM) }
        let deadline = Date().addingTimeInterval(10)
        while process.isRunning && Date() < deadline { usleep(20_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
        try? FileManager.default.removeItem(atPath: logPath)
        return process.terminationStatus
    }
}

private final class NoRedirects: NSObject, URLSessionTaskDelegate {
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse, newRequest request: URLRequest,
        completionHandler: @escaping (URLRequest?) -> Void
    ) {
        completionHandler(nil)
    }
}

/// Headless Chromium (Debian's `chromium`), as a reader's browser: screenshots and the DOM after
/// scripts ran. Screenshots are kept in ``artifacts`` for a person to look at.
public enum Chromium {
    /// `.build/test-artifacts/serve` in the repository, or `$KILN_TEST_ARTIFACTS/serve`.
    public static var artifacts: String {
        let root = ProcessInfo.processInfo.environment["KILN_TEST_ARTIFACTS"] ?? KilnBinary.repositoryRoot + "/.build/test-artifacts"
        return root + "/serve"
    }

    static func arguments(_ extra: [String], url: String) -> [String] {
        // --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start.
        ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run", "--disable-dev-shm-usage"] + extra + [url]
    }

    /// A PNG of `url` at `width`×`height`, saved as `artifacts/NAME.png`; its path.
    public static func screenshot(_ url: String, name: String, width: Int = 1280, height: Int = 900) async throws -> String {
        try FileManager.default.createDirectory(atPath: artifacts, withIntermediateDirectories: true)
        let path = artifacts + "/" + name + ".png"
        try? FileManager.default.removeItem(atPath: path)
        let result = try await ProcessRunner.run(
            try requiredTool("chromium"), arguments(["--window-size=\(width),\(height)", "--screenshot=\(path)"], url: url),
            timeout: .seconds(90))
        guard FileManager.default.fileExists(atPath: path) else {
            throw KilnError(.io, "chromium made no screenshot of \(url): \(result.stderr.suffix(600))")
        }
        return path
    }

    /// The page's DOM as Chromium built it (the inline SVG included).
    public static func dom(_ url: String) async throws -> String {
        let result = try await ProcessRunner.run(try requiredTool("chromium"), arguments(["--dump-dom"], url: url), timeout: .seconds(90))
        guard result.status == 0 else { throw KilnError(.io, "chromium could not load \(url): \(result.stderr.suffix(600))") }
        return result.stdout
    }
}
