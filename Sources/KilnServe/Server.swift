import Foundation
import Hummingbird
import KilnCore
import KilnModel
import KilnStore
import Logging
import NIOCore

/// `kiln serve`: the catalog as HTML pages and a JSON API, read-only (docs/serve.md).
public struct KilnServer: Sendable {
    let browser: Browser
    let address: ListenAddress
    let token: String?
    /// Live tails (server-sent event streams) open at once.
    let streams: StreamSlots
    public static let defaultMaxStreams = 64

    /// - Throws: ``KilnError/Code/invalidInput`` when `address` is not loopback and no token is given.
    public init(store: Store, address: ListenAddress, token: String?, maxStreams: Int = KilnServer.defaultMaxStreams) throws {
        guard (1...10_000).contains(maxStreams) else {
            throw KilnError(.invalidInput, "--max-streams must be from 1 to 10000, not \(maxStreams)")
        }
        let token = token.flatMap { $0.isEmpty ? nil : $0 }
        if !address.isLoopback {
            guard let token else {
                throw KilnError(
                    .invalidInput,
                    "kiln serve listens beyond this machine (\(address)) only with a token: set KILN_SERVE_TOKEN (at least 16 characters), or listen on 127.0.0.1"
                )
            }
            guard token.count >= 16 else {
                throw KilnError(.invalidInput, "KILN_SERVE_TOKEN is too short to guard \(address): give at least 16 characters")
            }
        }
        // The token travels in a cookie and a header: letters, digits and `-._~+/=` only (a `;`
        // would end the cookie early, and the browser's sign-in would fail without a word).
        if let token,
            !token.unicodeScalars.allSatisfy({
                $0.isASCII && (CharacterSet.alphanumerics.contains($0) || "-._~+/=".unicodeScalars.contains($0))
            })
        {
            throw KilnError(.invalidInput, "KILN_SERVE_TOKEN may hold only letters, digits and -._~+/= (openssl rand -hex 24 makes one)")
        }
        (self.browser, self.address, self.token) = (Browser(store: store), address, token)
        streams = StreamSlots(limit: maxStreams)
    }

    /// Serves until the task is cancelled (kiln turns SIGINT and SIGTERM into cancellation);
    /// `onReady` gets the address actually bound (port 0 picks one).
    public func run(onReady: @escaping @Sendable (ListenAddress) -> Void) async throws {
        var logger = Logger(label: "kiln.serve")
        logger.logLevel = .critical
        let host = address.host
        let app = Application(
            router: makeRouter(),
            // A connection that sends no request for 30 s is closed: idle sockets cannot hold
            // every file descriptor (the review's 20,000 silent connections kept a token holder out).
            server: .http1(configuration: .init(idleTimeout: .seconds(30))),
            configuration: .init(address: .hostname(host, port: address.port), serverName: "kiln"),
            onServerRunning: { channel in
                onReady(ListenAddress(host: host, port: channel.localAddress?.port ?? 0))
            },
            logger: logger)
        do {
            try await app.runService(gracefulShutdownSignals: [])
        } catch is CancellationError {
            return
        } catch let error as IOError {
            throw KilnError(.io, "cannot listen on \(address): \(error.description)")
        }
    }

    func makeRouter() -> Router<BasicRequestContext> {
        let router = Router(options: .autoGenerateHeadEndpoints)
        router.add(middleware: SecurityHeaders())
        router.add(middleware: LeaveOutUnreadableRows())
        router.add(middleware: ProblemAnswers(redactor: Secrets.redactor))
        router.add(middleware: ReadOnly())
        if let token { router.add(middleware: TokenGate(token: token)) }
        let (browser, streams) = (self.browser, self.streams)
        let catalogName = browser.catalog.location

        router.get("/static/kiln.css") { _, _ in HTML.response(Templates.css, type: "text/css; charset=utf-8") }
        router.get("/static/tail.js") { _, _ in HTML.response(Templates.tailScript, type: "text/javascript; charset=utf-8") }
        router.post("/login") { request, _ in try await self.signIn(request) }

        // Pages.
        router.get("/") { request, _ in
            try Self.cached(browser, request, type: HTML.type) { Pages.families(try browser.families(), catalog: catalogName) }
        }
        router.get("/families/:family") { request, context in
            let family = try context.parameters.require("family")
            let paging = try Paging(request)
            let state = try Self.state(request)
            return try Self.cached(browser, request, type: HTML.type) {
                let page = try browser.images(family: family, state: state, paging: paging)
                return Pages.family(try browser.family(family), page: page, stale: try browser.staleness(of: page.images), paging: paging)
            }
        }
        router.get("/families/:family/channels") { _, context in
            HTML.response(Pages.channels(try browser.channels(of: try context.parameters.require("family"))))
        }
        router.get("/images/:name") { request, context in
            let name = try context.parameters.require("name")
            let detail = try browser.image(name)
            let query = request.uri.queryParameters["q"].map(String.init)
            let packages = try browser.packages(of: name, query: query, paging: try Paging(request, limit: 100))
            let provenance = browser.store.provenanceData(of: name).map { String(decoding: $0, as: UTF8.self) }
            return HTML.response(Pages.image(detail, packages: packages, provenance: provenance))
        }
        router.get("/lineage") { request, _ in
            let all = try Self.flag(request, "all")
            return HTML.response(Pages.lineage(try browser.lineage(all: all), all: all))
        }
        router.get("/lineage.svg") { request, _ in
            HTML.response(try browser.lineage(all: try Self.flag(request, "all")).svg(), type: "image/svg+xml")
        }
        router.get("/builds") { request, _ in
            HTML.response(Pages.builds(try browser.builds(family: try Self.family(request), paging: try Paging(request))))
        }
        router.get("/builds/:id") { _, context in
            let build = try browser.build(try context.parameters.require("id"))
            let liveHere = build.status == .running && build.host == ProcessRegistry.hostName
            return HTML.response(Pages.build(build, log: try browser.log(of: build), liveHere: liveHere))
        }
        router.get("/builds/:id/events") { request, context in
            let build = try browser.build(try context.parameters.require("id"))
            let from = try Self.number(request, "from", default: 0)
            return LogTail(browser: browser, build: build, fromLine: from).response(slots: streams)
        }

        // The API: the same values as JSON.
        router.get("/api/openapi.json") { _, _ in
            Response(
                status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(string: OpenAPI.document)))
        }
        router.get("/api/families") { request, _ in try Self.cachedJSON(browser, request) { try browser.families() } }
        router.get("/api/families/:family") { request, context in
            let family = try context.parameters.require("family")
            return try Self.cachedJSON(browser, request) { try browser.family(family) }
        }
        router.get("/api/families/:family/images") { request, context in
            let (family, state, paging) = (try context.parameters.require("family"), try Self.state(request), try Paging(request))
            return try Self.cachedJSON(browser, request) { try browser.images(family: family, state: state, paging: paging) }
        }
        router.get("/api/families/:family/channels") { _, context in
            try JSON.response(try browser.channels(of: try context.parameters.require("family")))
        }
        router.get("/api/images/:name") { _, context in try JSON.response(try browser.image(try context.parameters.require("name"))) }
        router.get("/api/images/:name/packages") { request, context in
            let query = request.uri.queryParameters["q"].map(String.init)
            return try JSON.response(
                try browser.packages(of: try context.parameters.require("name"), query: query, paging: try Paging(request)))
        }
        router.get("/api/images/:name/provenance") { _, context in
            let name = try context.parameters.require("name")
            _ = try browser.record(name)
            guard let data = browser.store.provenanceData(of: name) else {
                throw KilnError(.notFound, "\(name) has no provenance record")
            }
            return HTML.response(String(decoding: data, as: UTF8.self), type: "application/json")
        }
        router.get("/api/lineage") { request, _ in
            let all = try Self.flag(request, "all")
            return try Self.cachedJSON(browser, request) { try browser.lineage(all: all) }
        }
        router.get("/api/builds") { request, _ in
            let (family, paging) = (try Self.family(request), try Paging(request))
            return try Self.cachedJSON(browser, request) { try browser.builds(family: family, paging: paging) }
        }
        router.get("/api/builds/:id") { _, context in try JSON.response(BuildView(try browser.build(try context.parameters.require("id"))))
        }
        router.get("/api/builds/:id/log") { _, context in
            let build = try browser.build(try context.parameters.require("id"))
            guard let log = try browser.log(of: build) else {
                throw KilnError(.notFound, "build \(build.id) has no log on this machine (status \(build.status.rawValue))")
            }
            return HTML.response(log, type: "text/plain; charset=utf-8")
        }
        return router
    }

    /// An answer made from the catalog alone, through the browser's ``CatalogCache``: `make` runs only when
    /// the catalog changed since the same request was last answered.
    static func cached(_ browser: Browser, _ request: Request, type: String, _ make: () throws -> String) throws -> Response {
        let (type, body) = try browser.answers.get(
            request.uri.description, token: browser.catalog.changeToken, keep: { $0.body.readableBytes <= Browser.largestKeptAnswer }
        ) { (type, ByteBuffer(string: Secrets.redact(try make()))) }
        return Response(status: .ok, headers: [.contentType: type, .cacheControl: "no-store"], body: .init(byteBuffer: body))
    }

    static func cachedJSON(_ browser: Browser, _ request: Request, _ make: () throws -> some Encodable) throws -> Response {
        try cached(browser, request, type: "application/json") { String(decoding: try JSON.encode(try make()), as: UTF8.self) }
    }

    /// The sign-in form's answer: the token in an HttpOnly, SameSite=Strict cookie.
    func signIn(_ request: Request) async throws -> Response {
        guard let token else { return Response(status: .seeOther, headers: [.location: "/"]) }
        var request = request
        let body = try await request.collectBody(upTo: 4096)
        let form = String(buffer: body)
        let presented = form.split(separator: "&").compactMap { pair -> String? in
            let parts = pair.split(separator: "=", maxSplits: 1)
            guard parts.count == 2, parts[0] == "token" else { return nil }
            return String(parts[1]).replacingOccurrences(of: "+", with: " ").removingPercentEncoding
        }.first
        let gate = TokenGate<BasicRequestContext>(token: token)
        guard gate.allows(presented.map { Substring($0) }) else {
            return Problem(status: .unauthorized, message: "that is not this server's token").response(html: true, signIn: true)
        }
        var headers = HTTPFields()
        headers[.location] = "/"
        headers[.setCookie] = "\(TokenGate<BasicRequestContext>.cookie)=\(presented ?? ""); Path=/; HttpOnly; SameSite=Strict"
        return Response(status: .seeOther, headers: headers)
    }

    static func state(_ request: Request) throws -> ImageState? {
        guard let text = request.uri.queryParameters["state"] else { return nil }
        guard let state = ImageState(rawValue: String(text).uppercased()) else {
            throw KilnError(
                .invalidInput, "state must be one of \(ImageState.allCases.map(\.rawValue).joined(separator: ", ")), not '\(text)'")
        }
        return state
    }

    static func family(_ request: Request) throws -> String? {
        guard let text = request.uri.queryParameters["family"] else { return nil }
        guard Names.isValidFamily(String(text)) else {
            throw KilnError(.invalidInput, "'\(text)' is not a family name: families match [a-z0-9][a-z0-9-]{0,62}")
        }
        return String(text)
    }

    static func flag(_ request: Request, _ name: String) throws -> Bool {
        guard let text = request.uri.queryParameters[Substring(name)] else { return false }
        switch text {
        case "true", "1", "": return true
        case "false", "0": return false
        default: throw KilnError(.invalidInput, "\(name) must be true or false, not '\(text)'")
        }
    }

    static func number(_ request: Request, _ name: String, default value: Int) throws -> Int {
        guard let text = request.uri.queryParameters[Substring(name)] else { return value }
        guard let number = Int(text), number >= 0 else {
            throw KilnError(.invalidInput, "\(name) must be a whole number ≥ 0, not '\(text)'")
        }
        return number
    }
}

extension Paging {
    init(_ request: Request, limit: Int = Paging.defaultLimit) throws {
        let query = request.uri.queryParameters
        try self.init(offset: query["offset"], limit: query["limit"])
        if query["limit"] == nil { self.limit = limit }
    }
}

/// kiln's own credentials in this process's environment (the serve token, a catalog password):
/// redacted from everything the server sends, as from build logs.
enum Secrets {
    static let redactor = Redactor(OwnSecrets.values())

    static func redact(_ text: String) -> String { redactor.values.isEmpty ? text : redactor(text) }
}
