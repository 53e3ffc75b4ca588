import Foundation
import KilnCore
import KilnTestSupport
import Testing

@testable import KilnExport
@testable import KilnRegistry

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// kiln's registry credentials go to the registry and nowhere else: not to the host a redirect
/// names, not to an upload Location on another origin, not in the clear to a token realm.
@Suite("Registry credentials stay with the registry (hostile loopback front)")
struct RegistryCredentialTests {
    final class Front {
        let dir = NSTemporaryDirectory() + "kiln-redirect-" + UUID().uuidString
        let fixture: FixtureScript

        init(mode: String) throws {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            fixture = try FixtureScript(
                URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/redirect_server.py",
                arguments: [dir + "/port", mode], portFile: dir + "/port", logPath: dir + "/log")
        }

        deinit {
            fixture.stop()
            try? FileManager.default.removeItem(atPath: dir)
        }
    }

    @Test("a 307 to another origin is followed without the Authorization header the registry got")
    func crossOriginRedirect() async throws {
        let front = try Front(mode: "redirect")
        let client = RegistryClient(
            reference: try RegistryReference(parsing: "127.0.0.1:\(front.fixture.port)/shop/web:t"), username: "ci",
            password: "registry-password", retryDelays: [])
        _ = try? await client.blobExists("sha256:" + String(repeating: "a", count: 64))
        let log = front.fixture.log
        // The registry got the credentials (after its Basic challenge); the other origin did not.
        #expect(log.contains("REGISTRY HEAD") && log.contains("auth=Basic "), "\(log)")
        let elsewhere = log.split(separator: "\n").filter { $0.hasPrefix("ELSEWHERE") }
        #expect(!elsewhere.isEmpty, "the redirect was not followed: \(log)")
        #expect(elsewhere.allSatisfy { $0.hasSuffix("auth=-") }, "\(log)")
    }

    @Test("the redirect and realm rules: same origin keeps Authorization, another drops it, https to http is refused")
    func rules() throws {
        var request = URLRequest(url: URL(string: "https://cdn.example/blob")!)
        request.setValue("Basic x", forHTTPHeaderField: "Authorization")
        let registry = URL(string: "https://registry.example/v2/a/blobs/b")!
        #expect(ChallengeCatcher.redirect(from: registry, to: request)?.value(forHTTPHeaderField: "Authorization") == nil)
        var same = URLRequest(url: URL(string: "https://registry.example:443/v2/other")!)
        same.setValue("Basic x", forHTTPHeaderField: "Authorization")
        #expect(ChallengeCatcher.redirect(from: registry, to: same)?.value(forHTTPHeaderField: "Authorization") == "Basic x")
        #expect(ChallengeCatcher.redirect(from: registry, to: URLRequest(url: URL(string: "http://registry.example/v2/x")!)) == nil)
        #expect(
            !RegistryClient.mayReceiveCredentials(realm: URL(string: "http://auth.example/token")!, registry: "https://registry.example"))
        #expect(
            RegistryClient.mayReceiveCredentials(realm: URL(string: "https://auth.example/token")!, registry: "https://registry.example"))
        #expect(RegistryClient.mayReceiveCredentials(realm: URL(string: "http://127.0.0.1:5000/token")!, registry: "http://127.0.0.1:5000"))
        #expect(!Origin.same(URL(string: "http://127.0.0.1:5000/a")!, URL(string: "http://127.0.0.1:5001/a")!))
    }
}
