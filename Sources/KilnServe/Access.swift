import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import KilnCore
import KilnStore

/// Where `kiln serve` listens: `HOST:PORT`, `[IPV6]:PORT`, or `:PORT` for loopback.
public struct ListenAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: Int

    public init(host: String, port: Int) { (self.host, self.port) = (host, port) }

    public init(parsing text: String) throws {
        let bad = KilnError(.invalidInput, "cannot listen on '\(text)': give HOST:PORT (127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080)")
        let host: Substring
        let portText: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else { throw bad }
            host = text[text.index(after: text.startIndex)..<close]
            portText = text[text.index(close, offsetBy: 2)...]
        } else {
            guard let colon = text.lastIndex(of: ":"), !text[..<colon].contains(":") else { throw bad }
            host = text[..<colon].isEmpty ? "127.0.0.1" : text[..<colon]
            portText = text[text.index(after: colon)...]
        }
        guard !host.isEmpty, let port = Int(portText), (0...65535).contains(port) else { throw bad }
        self.init(host: String(host), port: port)
    }

    /// Only this machine can connect: 127.0.0.0/8, ::1, localhost.
    /// An address literal, not a name that merely starts with `127.` (which could resolve anywhere).
    public var isLoopback: Bool {
        if host == "localhost" { return true }
        var v4 = in_addr()
        if inet_pton(AF_INET, host, &v4) == 1 { return UInt32(bigEndian: v4.s_addr) >> 24 == 127 }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, host, &v6) == 1 {
            return host == "::1" || withUnsafeBytes(of: &v6) { Array($0) } == Array(repeating: 0, count: 15) + [1]
        }
        return false
    }

    public var description: String { host.contains(":") ? "[\(host)]:\(port)" : "\(host):\(port)" }
}

/// Who may read: everyone who can connect to a loopback listener, and only holders of the token
/// otherwise. The token travels as `Authorization: Bearer TOKEN` (scripts) or in an HttpOnly,
/// SameSite=Strict cookie set by the sign-in form (browsers); never in a URL, where proxies and
/// browser history would keep it.
struct TokenGate<Context: RequestContext>: RouterMiddleware {
    static var cookie: String { "kiln_token" }
    /// The token's SHA-256: compared in constant time, and the token itself is not kept around.
    let digest: SHA256.Digest

    init(token: String) { digest = SHA256.hash(data: Data(token.utf8)) }

    func allows(_ presented: Substring?) -> Bool {
        guard let presented else { return false }
        // Digests of equal length: `==` on SHA256.Digest compares in constant time.
        return SHA256.hash(data: Data(presented.utf8)) == digest
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let path = request.uri.path
        if path == "/static/kiln.css" || path == "/login" { return try await next(request, context) }
        if allows(Self.bearer(request)) || allows(Self.cookieValue(request)) { return try await next(request, context) }
        if path.hasPrefix("/api/") {
            var response = Problem(status: .unauthorized, message: "this kiln serve needs its token: send Authorization: Bearer TOKEN")
                .response(html: false)
            response.headers[.wwwAuthenticate] = "Bearer realm=\"kiln\""
            return response
        }
        return Problem(status: .unauthorized, message: "this kiln serve needs its token").response(html: true, signIn: true)
    }

    static func bearer(_ request: Request) -> Substring? {
        guard let value = request.headers[.authorization], value.lowercased().hasPrefix("bearer ") else { return nil }
        return value.dropFirst("bearer ".count)
    }

    static func cookieValue(_ request: Request) -> Substring? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1)
                if parts.count == 2, parts[0].trimmingCharacters(in: .whitespaces) == cookie { return parts[1] }
            }
        }
        return nil
    }
}

/// The server only reads: GET and HEAD, and the sign-in form's POST. Anything else is 405
/// with the methods that would do, before any handler runs.
struct ReadOnly<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let method = request.method
        if method == .get || method == .head || (method == .post && request.uri.path == "/login") {
            return try await next(request, context)
        }
        var response = Problem(status: .methodNotAllowed, message: "kiln serve only reads: use GET")
            .response(html: !request.uri.path.hasPrefix("/api/"))
        response.headers[.allow] = request.uri.path == "/login" ? "POST" : "GET, HEAD"
        return response
    }
}

/// Headers every answer carries: no framing, no sniffing, no referrer, and a content policy that
/// allows only kiln's own stylesheet and script.
struct SecurityHeaders<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        var response = try await next(request, context)
        response.headers[.contentSecurityPolicy] =
            "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'"
        response.headers[.xContentTypeOptions] = "nosniff"
        response.headers[.referrerPolicy] = "no-referrer"
        response.headers[.xFrameOptions] = "DENY"
        return response
    }
}

extension HTTPField.Name {
    static let xContentTypeOptions = Self("X-Content-Type-Options")!
    static let xFrameOptions = Self("X-Frame-Options")!
    static let referrerPolicy = Self("Referrer-Policy")!
}

/// Every request reads the catalog leaving out rows it cannot read (``UnreadableRows``): a
/// shared catalog with one bad row must not take every page down with it. Pages say so at the
/// top; every answer says how many in `Kiln-Unreadable-Rows`.
struct LeaveOutUnreadableRows<Context: RequestContext>: RouterMiddleware {
    static var header: HTTPField.Name { HTTPField.Name("Kiln-Unreadable-Rows")! }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let unreadable = UnreadableRows()
        var response = try await UnreadableRows.$current.withValue(unreadable) { try await next(request, context) }
        if unreadable.count > 0 { response.headers[Self.header] = String(unreadable.count) }
        return response
    }
}
