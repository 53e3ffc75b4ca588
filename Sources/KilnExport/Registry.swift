import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where an image goes: `host[:port]/repository[:tag][@sha256:<hex>]`.
///
/// The host is never implied: kiln has no default registry, so `shop/web:1` is refused rather
/// than silently sent somewhere.
public struct RegistryReference: Sendable, Equatable, CustomStringConvertible {
    /// `name[:port]`, `[v6]:port` as written.
    public var host: String
    public var repository: String
    /// `latest` when neither a tag nor a digest is written, as other tools do.
    public var tag: String?
    /// `sha256:<hex>`: the manifest pushed must have this digest.
    public var digest: String?
    /// Plain HTTP to a registry that is not on loopback.
    public var insecure: Bool

    public init(parsing text: String, insecure: Bool = false) throws {
        func invalid(_ why: String) -> KilnError {
            KilnError(.invalidInput, "invalid registry reference \"\(text)\": \(why)")
        }
        guard !text.isEmpty else { throw invalid("it is empty") }
        guard !text.contains("://") else {
            throw invalid("write it without a scheme, as host[:port]/repository:tag (plain HTTP is chosen by insecure)")
        }
        var rest = Substring(text)
        if let at = rest.firstIndex(of: "@") {
            let digest = String(rest[rest.index(after: at)...])
            guard Self.isDigest(digest) else { throw invalid("digest \"\(digest)\" is not sha256:<64 lowercase hex digits>") }
            self.digest = digest
            rest = rest[..<at]
        } else {
            digest = nil
        }
        guard let slash = rest.firstIndex(of: "/") else {
            throw invalid("no registry host or no repository: write host[:port]/repository:tag")
        }
        let host = String(rest[..<slash])
        var path = rest[rest.index(after: slash)...]
        guard Self.looksLikeHost(host) else {
            throw invalid(
                "no registry host (\"\(host)\" is a repository component): write host[:port]/repository:tag, e.g. localhost:5000/\(rest)"
            )
        }
        if let problem = Self.hostProblem(host) { throw invalid(problem) }
        self.host = host
        // The host is gone, so a colon left can only start the tag.
        if let colon = path.lastIndex(of: ":") {
            let tag = String(path[path.index(after: colon)...])
            guard Self.isTag(tag) else {
                throw invalid(
                    "tag \"\(tag)\" must be 1 to 128 letters, digits, '_', '.' or '-', not starting with '.' or '-'")
            }
            self.tag = tag
            path = path[..<colon]
        } else {
            tag = digest == nil ? "latest" : nil
        }
        let repository = String(path)
        if let problem = Self.repositoryProblem(repository) { throw invalid(problem) }
        self.repository = repository
        self.insecure = insecure
    }

    /// `http` for loopback registries (no certificate to be had there) or when asked; else `https`.
    public var scheme: String { insecure || isLoopback ? "http" : "https" }

    public var isLoopback: Bool {
        let name: Substring
        if host.hasPrefix("["), let close = host.firstIndex(of: "]") {
            name = host[...close]
        } else {
            name = host.split(separator: ":", maxSplits: 1).first ?? ""
        }
        return ["localhost", "127.0.0.1", "[::1]"].contains(name.lowercased())
    }

    /// The tag, else the digest: what the manifest is stored under.
    public var manifestReference: String { tag ?? digest ?? "latest" }

    public var description: String {
        host + "/" + repository + (tag.map { ":" + $0 } ?? "") + (digest.map { "@" + $0 } ?? "")
    }

    // The grammar is the distribution spec's (and its reference package's).

    static func isDigest(_ text: String) -> Bool {
        guard text.hasPrefix("sha256:") else { return false }
        let hex = text.utf8.dropFirst(7)
        return hex.count == 64 && hex.allSatisfy { (0x30...0x39).contains($0) || (0x61...0x66).contains($0) }
    }

    static func isTag(_ text: String) -> Bool {
        let bytes = Array(text.utf8)
        guard let first = bytes.first, bytes.count <= 128, isAlnum(first) || first == UInt8(ascii: "_") else {
            return false
        }
        return bytes.allSatisfy { isAlnum($0) || $0 == UInt8(ascii: "_") || $0 == UInt8(ascii: ".") || $0 == UInt8(ascii: "-") }
    }

    /// As other clients decide it: a first component with a dot or a port, or `localhost`.
    static func looksLikeHost(_ text: String) -> Bool {
        text.contains(".") || text.contains(":") || text.hasPrefix("[") || text == "localhost"
    }

    static func hostProblem(_ host: String) -> String? {
        var name = Substring(host)
        var port: Substring?
        if host.hasPrefix("[") {
            guard let close = host.firstIndex(of: "]") else { return "host \"\(host)\" has no closing ']'" }
            let inside = host[host.index(after: host.startIndex)..<close]
            guard !inside.isEmpty, inside.allSatisfy({ $0.isHexDigit || $0 == ":" || $0 == "." }) else {
                return "host \"\(host)\" is not an IPv6 address in brackets"
            }
            let after = host[host.index(after: close)...]
            if !after.isEmpty {
                guard after.hasPrefix(":") else { return "host \"\(host)\" has text after ']' that is not a port" }
                port = after.dropFirst()
            }
            name = ""
        } else if let colon = host.firstIndex(of: ":") {
            name = host[..<colon]
            port = host[host.index(after: colon)...]
        }
        if let port {
            guard let number = Int(port), (1...65535).contains(number), port.allSatisfy(\.isASCII) else {
                return "port \"\(port)\" of host \"\(host)\" is not a number from 1 to 65535"
            }
        }
        if host.hasPrefix("[") { return nil }
        let labels = name.split(separator: ".", omittingEmptySubsequences: false)
        for label in labels {
            let bytes = Array(label.utf8)
            guard let first = bytes.first, let last = bytes.last, isAlnum(first), isAlnum(last),
                bytes.allSatisfy({ isAlnum($0) || $0 == UInt8(ascii: "-") })
            else {
                return "host \"\(host)\" is not a host name: labels are letters, digits and inner '-', separated by '.'"
            }
        }
        return nil
    }

    static func repositoryProblem(_ repository: String) -> String? {
        guard !repository.isEmpty else { return "no repository after the host" }
        guard repository.utf8.count <= 255 else { return "the repository is longer than 255 characters" }
        if repository.contains(where: \.isUppercase) {
            return "repository \"\(repository)\" has uppercase letters: repository names are lowercase"
        }
        for component in repository.split(separator: "/", omittingEmptySubsequences: false)
        where !isPathComponent(component) {
            return
                "repository component \"\(component)\" must be lowercase letters and digits, joined by '.', '_', '__' or dashes"
        }
        return nil
    }

    /// `[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*`
    private static func isPathComponent(_ component: Substring) -> Bool {
        let bytes = Array(component.utf8)
        guard let first = bytes.first, let last = bytes.last, isLowerAlnum(first), isLowerAlnum(last) else { return false }
        var separator: [UInt8] = []
        for byte in bytes {
            if isLowerAlnum(byte) {
                if !separator.isEmpty {
                    let text = String(decoding: separator, as: UTF8.self)
                    guard text == "." || text == "_" || text == "__" || text.allSatisfy({ $0 == "-" }) else { return false }
                    separator = []
                }
            } else {
                separator.append(byte)
            }
        }
        return true
    }

    private static func isAlnum(_ byte: UInt8) -> Bool {
        isLowerAlnum(byte) || (0x41...0x5A).contains(byte)
    }

    private static func isLowerAlnum(_ byte: UInt8) -> Bool {
        (0x30...0x39).contains(byte) || (0x61...0x7A).contains(byte)
    }
}

/// Who kiln is at a registry.
public struct RegistryCredentials: Sendable, Equatable {
    public var username: String
    public var password: String

    public init(username: String, password: String) {
        self.username = username
        self.password = password
    }

    /// From `KILN_REGISTRY_USER` and `KILN_REGISTRY_PASSWORD`: the environment, not a flag, so the
    /// password stays out of shell history and `ps`. Nil when neither is set.
    public static func fromEnvironment(
        _ environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RegistryCredentials? {
        let user = environment["KILN_REGISTRY_USER"].flatMap { $0.isEmpty ? nil : $0 }
        let password = environment["KILN_REGISTRY_PASSWORD"].flatMap { $0.isEmpty ? nil : $0 }
        switch (user, password) {
        case (nil, nil): return nil
        case (let user?, let password?): return RegistryCredentials(username: user, password: password)
        case (nil, _): throw KilnError(.invalidInput, "KILN_REGISTRY_PASSWORD is set but KILN_REGISTRY_USER is not")
        case (_, nil): throw KilnError(.invalidInput, "KILN_REGISTRY_USER is set but KILN_REGISTRY_PASSWORD is not")
        }
    }
}

/// One repository of one registry, spoken to over the OCI distribution API.
public final class RegistryClient: Sendable {
    public let host: String
    public let repository: String
    /// Bytes per PATCH of a blob upload: what one upload holds in memory.
    public let chunkSize: Int
    private let base: String
    private let credentials: RegistryCredentials?
    private let retryDelays: [Duration]
    private let session: URLSession
    private let challenges = ChallengeCatcher()
    private let auth = Locked(AuthState())

    private struct AuthState: Sendable {
        /// By scope (`repository:shop/web:pull,push`): a token for pulls does not allow pushes.
        var tokens: [String: String] = [:]
        /// The registry asked for Basic: send it up front from then on.
        var basic = false
    }

    public init(
        reference: RegistryReference, username: String? = nil, password: String? = nil, chunkSize: Int = 8 << 20,
        retryDelays: [Duration] = [.milliseconds(500), .seconds(2), .seconds(5)]
    ) {
        host = reference.host
        repository = reference.repository
        base = reference.scheme + "://" + reference.host
        if let username, let password {
            credentials = RegistryCredentials(username: username, password: password)
        } else {
            credentials = nil
        }
        self.chunkSize = max(1, chunkSize)
        self.retryDelays = retryDelays
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.httpShouldSetCookies = false
        configuration.timeoutIntervalForRequest = 120
        session = URLSession(configuration: configuration, delegate: challenges, delegateQueue: nil)
    }

    // The session holds its delegate until it is invalidated.
    deinit { session.finishTasksAndInvalidate() }

    /// A client with the credentials of ``RegistryCredentials/fromEnvironment(_:)``.
    public static func fromEnvironment(
        reference: RegistryReference, environment: [String: String] = ProcessInfo.processInfo.environment
    ) throws -> RegistryClient {
        let credentials = try RegistryCredentials.fromEnvironment(environment)
        return RegistryClient(reference: reference, username: credentials?.username, password: credentials?.password)
    }

    private var pullScope: String { "repository:\(repository):pull" }
    private var pushScope: String { "repository:\(repository):pull,push" }

    // MARK: API

    public func blobExists(_ digest: String) async throws -> Bool {
        let url = try endpoint("/v2/\(repository)/blobs/\(digest)")
        let response = try await send("HEAD", url, scope: pullScope, idempotent: true)
        switch response.status {
        case 200: return true
        case 404: return false
        default: throw failure("HEAD", url, response)
        }
    }

    /// Streams the blob at `path` in ``chunkSize`` PATCHes: memory stays bounded however big the layer.
    public func uploadBlob(path: String, descriptor: OCIDescriptor) async throws {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            throw KilnError(.notFound, "blob \(descriptor.digest) is not in the layout (\(path))")
        }
        defer { try? handle.close() }
        let size = (try? FileManager.default.attributesOfItem(atPath: path)[.size] as? Int64) ?? -1
        guard size == descriptor.size else {
            throw KilnError(.invalidInput, "blob \(path) is \(size) bytes, its descriptor says \(descriptor.size)")
        }
        let start = try endpoint("/v2/\(repository)/blobs/uploads/")
        let opened = try await send("POST", start, body: Data(), scope: pushScope, idempotent: false)
        guard opened.status == 202 else { throw failure("POST", start, opened) }
        var location = try nextLocation(opened, after: "POST", start)
        do {
            var offset: Int64 = 0
            while true {
                let chunk: Data
                do { chunk = try handle.read(upToCount: chunkSize) ?? Data() } catch {
                    throw KilnError(.io, "cannot read \(path)", cause: error as NSError)
                }
                if chunk.isEmpty { break }
                let headers = [
                    "Content-Type": "application/octet-stream",
                    "Content-Range": "\(offset)-\(offset + Int64(chunk.count) - 1)",
                ]
                let patched = try await send(
                    "PATCH", location, headers: headers, body: chunk, scope: pushScope, idempotent: false)
                guard patched.status == 202 else { throw failure("PATCH", location, patched) }
                offset += Int64(chunk.count)
                // Each PATCH may move the upload (a new `_state`, another node): go where it says.
                location = try nextLocation(patched, after: "PATCH", location)
            }
            guard offset == descriptor.size else {
                throw KilnError(.io, "blob \(path) changed while it was uploaded (\(offset) of \(descriptor.size) bytes)")
            }
            let finish = try appendingQuery(location, "digest=" + descriptor.digest)
            let closed = try await send("PUT", finish, body: Data(), scope: pushScope, idempotent: false)
            guard closed.status == 201 else { throw failure("PUT", finish, closed) }
        } catch {
            // An abandoned upload holds space on the registry until its purge: give it back now.
            _ = try? await send("DELETE", location, scope: pushScope, idempotent: false)
            throw error
        }
    }

    /// Stores a manifest under `reference` (a tag or a digest) and returns its digest as the registry computed it.
    @discardableResult
    public func putManifest(data: Data, mediaType: String, reference: String) async throws -> String {
        let url = try endpoint("/v2/\(repository)/manifests/\(reference)")
        let response = try await send(
            "PUT", url, headers: ["Content-Type": mediaType], body: data, scope: pushScope, idempotent: true)
        guard response.status == 201 else { throw failure("PUT", url, response) }
        return response.headers["docker-content-digest"] ?? "sha256:" + Hashing.sha256Hex(data)
    }

    // MARK: Transport

    struct Response: Sendable {
        let status: Int
        /// Names lowercased.
        let headers: [String: String]
        let body: Data
        let url: URL
    }

    private func endpoint(_ path: String) throws -> URL {
        guard let url = URL(string: base + path) else {
            throw KilnError(.invalidInput, "registry \(host): cannot make a URL of \(path)")
        }
        return url
    }

    /// The upload's next URL: `Location` may be relative, and its query (`_state`) must be kept.
    private func nextLocation(_ response: Response, after method: String, _ url: URL) throws -> URL {
        guard let location = response.headers["location"] else {
            throw KilnError(.io, "registry \(host): \(method) \(url.path): HTTP \(response.status) without a Location")
        }
        guard let next = URL(string: location, relativeTo: response.url)?.absoluteURL else {
            throw KilnError(.io, "registry \(host): \(method) \(url.path): Location \"\(location)\" is not a URL")
        }
        return next
    }

    private func appendingQuery(_ url: URL, _ item: String) throws -> URL {
        // Appended as text: re-encoding the registry's opaque `_state` could change it.
        guard var components = URLComponents(url: url, resolvingAgainstBaseURL: true) else {
            throw KilnError(.io, "registry \(host): upload URL \(url) is not a URL")
        }
        let query = components.percentEncodedQuery ?? ""
        components.percentEncodedQuery = query.isEmpty ? item : query + "&" + item
        guard let result = components.url else { throw KilnError(.io, "registry \(host): upload URL \(url) is not a URL") }
        return result
    }

    /// One request with authentication: a 401 is answered once per call (a cached token may have expired).
    private func send(
        _ method: String, _ url: URL, headers: [String: String] = [:], body: Data? = nil, scope: String,
        idempotent: Bool
    ) async throws -> Response {
        var reauthenticated = false
        while true {
            var all = headers
            if let authorization = authorization(for: scope) { all["Authorization"] = authorization }
            let response = try await transport(method, url, headers: all, body: body, idempotent: idempotent)
            guard response.status == 401, !reauthenticated else { return response }
            reauthenticated = true
            guard try await authenticate(response, scope: scope, method: method, url: url) else { return response }
        }
    }

    private func authorization(for scope: String) -> String? {
        let state = auth.value
        if let token = state.tokens[scope] { return "Bearer " + token }
        if state.basic, let credentials { return basicAuthorization(credentials) }
        return nil
    }

    private func basicAuthorization(_ credentials: RegistryCredentials) -> String {
        "Basic " + Data("\(credentials.username):\(credentials.password)".utf8).base64EncodedString()
    }

    /// Meets a 401's challenge; false when there is nothing to answer it with.
    private func authenticate(_ response: Response, scope: String, method: String, url: URL) async throws -> Bool {
        let challenges = WWWAuthenticate.parse(response.headers["www-authenticate"] ?? "")
        if let bearer = challenges.first(where: { $0.scheme == "bearer" }) {
            let token = try await fetchToken(bearer, scope: scope)
            auth.withLock { state in
                state.tokens[scope] = token
                if let asked = bearer.parameters["scope"] { state.tokens[asked] = token }
            }
            return true
        }
        if challenges.contains(where: { $0.scheme == "basic" }) {
            guard credentials != nil else {
                throw KilnError(
                    .io,
                    "registry \(host): \(method) \(url.path): HTTP 401: the registry wants a user name and password"
                        + " (KILN_REGISTRY_USER, KILN_REGISTRY_PASSWORD)")
            }
            if auth.value.basic { return false }
            auth.withLock { $0.basic = true }
            return true
        }
        return false
    }

    private func fetchToken(_ challenge: WWWAuthenticate, scope: String) async throws -> String {
        guard let realm = challenge.parameters["realm"], var components = URLComponents(string: realm),
            let realmScheme = components.scheme?.lowercased(), realmScheme == "https" || realmScheme == "http"
        else {
            throw KilnError(.io, "registry \(host): its Bearer challenge has no usable realm: \(challenge.raw)")
        }
        var items = components.queryItems ?? []
        if let service = challenge.parameters["service"] { items.append(URLQueryItem(name: "service", value: service)) }
        // Several scopes come space-separated in one challenge; the token endpoint takes one parameter each.
        for each in (challenge.parameters["scope"] ?? scope).split(separator: " ") {
            items.append(URLQueryItem(name: "scope", value: String(each)))
        }
        components.queryItems = items
        guard let url = components.url else { throw KilnError(.io, "registry \(host): bad token realm \(realm)") }
        var headers: [String: String] = [:]
        if let credentials { headers["Authorization"] = basicAuthorization(credentials) }
        let response = try await transport("GET", url, headers: headers, body: nil, idempotent: true)
        guard response.status == 200 else {
            let rejected =
                response.status == 401 || response.status == 403
                ? (credentials == nil
                    ? ": the registry wants a user name and password (KILN_REGISTRY_USER, KILN_REGISTRY_PASSWORD)"
                    : ": credentials for \(credentials!.username) were rejected")
                : ""
            throw KilnError(
                .io,
                "registry \(host): token from \(url.host ?? realm)\(url.path): HTTP \(response.status)"
                    + Self.errorMessages(response.body) + rejected)
        }
        struct TokenResponse: Decodable {
            var token: String?
            var access_token: String?
        }
        let decoded = try? JSONDecoder().decode(TokenResponse.self, from: response.body)
        guard let token = decoded?.token ?? decoded?.access_token, !token.isEmpty else {
            throw KilnError(.io, "registry \(host): token endpoint \(url.path) answered without a token")
        }
        return token
    }

    /// One HTTP exchange; idempotent ones are retried on 429, 5xx and lost connections.
    private func transport(
        _ method: String, _ url: URL, headers: [String: String], body: Data?, idempotent: Bool
    ) async throws -> Response {
        var attempt = 0
        while true {
            var request = URLRequest(url: url)
            request.httpMethod = method
            for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
            request.setValue("kiln", forHTTPHeaderField: "User-Agent")
            let data: Data
            let urlResponse: URLResponse
            do {
                if let body { request.setValue(String(body.count), forHTTPHeaderField: "Content-Length") }
                switch try await exchange(request, body: body) {
                case .response(let received, let payload): (urlResponse, data) = (received, payload)
                case .challenged(let status, let fields):
                    return Response(status: status, headers: fields, body: Data(), url: url)
                }
            } catch {
                if Task.isCancelled { throw KilnError(.cancelled, "registry \(host): \(method) \(url.path) was cancelled") }
                if idempotent, attempt < retryDelays.count {
                    try await pause(retryDelays[attempt], method, url)
                    attempt += 1
                    continue
                }
                throw KilnError(.io, "registry \(host): \(method) \(url.path): \(error.localizedDescription)")
            }
            guard let http = urlResponse as? HTTPURLResponse else {
                throw KilnError(.io, "registry \(host): \(method) \(url.path): not an HTTP response")
            }
            var fields: [String: String] = [:]
            for (name, value) in http.allHeaderFields {
                if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
            }
            let response = Response(status: http.statusCode, headers: fields, body: data, url: http.url ?? url)
            let transient = response.status == 429 || (500...599).contains(response.status)
            if transient, idempotent, attempt < retryDelays.count {
                // Retry-After in seconds, within reason; dates are rare enough to ignore.
                let asked = fields["retry-after"].flatMap(Int.init).map { Duration.seconds(min($0, 30)) }
                try await pause(asked ?? retryDelays[attempt], method, url)
                attempt += 1
                continue
            }
            return response
        }
    }

    private enum Exchange: @unchecked Sendable {
        case response(URLResponse, Data)
        /// A 401 that FoundationNetworking took as its own challenge (Basic) and kiln declined.
        case challenged(Int, [String: String])
    }

    /// One task, not `data(for:)`: FoundationNetworking hangs on a Basic 401 unless the session's
    /// delegate declines it, and only the task's identifier ties that 401 back to this request.
    private func exchange(_ request: URLRequest, body: Data?) async throws -> Exchange {
        let box = Locked<TaskBox>(TaskBox())
        return try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Exchange, any Error>) in
                let done: @Sendable (Data?, URLResponse?, (any Error)?) -> Void = { [challenges] data, response, error in
                    let id = box.value.task?.taskIdentifier ?? -1
                    if let declined = challenges.take(id) {
                        continuation.resume(returning: .challenged(declined.status, declined.headers))
                    } else if let response {
                        continuation.resume(returning: .response(response, data ?? Data()))
                    } else {
                        continuation.resume(throwing: error ?? URLError(.badServerResponse))
                    }
                }
                let task =
                    body.map { session.uploadTask(with: request, from: $0, completionHandler: done) }
                    ?? session.dataTask(with: request, completionHandler: done)
                let cancelled = box.withLock { state in
                    state.task = task
                    return state.cancelled
                }
                if cancelled { task.cancel() }
                task.resume()
            }
        } onCancel: {
            box.withLock { state in
                state.cancelled = true
                return state.task
            }?.cancel()
        }
    }

    private func pause(_ delay: Duration, _ method: String, _ url: URL) async throws {
        do { try await Task.sleep(for: delay) } catch {
            throw KilnError(.cancelled, "registry \(host): \(method) \(url.path) was cancelled")
        }
    }

    private func failure(_ method: String, _ url: URL, _ response: Response) -> KilnError {
        var detail = Self.errorMessages(response.body)
        if response.status == 401 {
            // A declined Basic challenge comes without its body.
            if detail.isEmpty { detail = ": authentication required" }
            detail += credentials.map { " (credentials for \($0.username) were rejected)" } ?? ""
        }
        return KilnError(.io, "registry \(host): \(method) \(url.path): HTTP \(response.status)" + detail)
    }

    /// `: message; message` from the distribution spec's `{"errors": [{"code", "message"}]}` body.
    static func errorMessages(_ body: Data) -> String {
        struct Envelope: Decodable {
            struct Entry: Decodable {
                var code: String?
                var message: String?
            }
            var errors: [Entry]?
        }
        guard let envelope = try? JSONDecoder().decode(Envelope.self, from: body), let errors = envelope.errors else {
            return ""
        }
        let messages = errors.compactMap { $0.message ?? $0.code }.filter { !$0.isEmpty }
        return messages.isEmpty ? "" : ": " + messages.joined(separator: "; ")
    }
}

private struct TaskBox: @unchecked Sendable {
    var task: URLSessionTask?
    var cancelled = false
}

/// Declines the challenges FoundationNetworking raises for `Basic` 401s (it would otherwise wait
/// for credentials forever) and keeps the 401 for the request to answer itself.
private final class ChallengeCatcher: NSObject, URLSessionTaskDelegate, Sendable {
    struct Declined: Sendable {
        let status: Int
        let headers: [String: String]
    }
    private let declined = Locked<[Int: Declined]>([:])

    func take(_ taskIdentifier: Int) -> Declined? {
        declined.withLock { $0.removeValue(forKey: taskIdentifier) }
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void
    ) {
        if let response = challenge.failureResponse as? HTTPURLResponse {
            var fields: [String: String] = [:]
            for (name, value) in response.allHeaderFields {
                if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
            }
            let entry = Declined(status: response.statusCode, headers: fields)
            declined.withLock { $0[task.taskIdentifier] = entry }
        }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }
}

/// One challenge of a `WWW-Authenticate` header (RFC 7235): a scheme and its auth-params.
struct WWWAuthenticate: Sendable, Equatable {
    /// Lowercased.
    var scheme: String
    /// Names lowercased; quoted values unquoted.
    var parameters: [String: String]
    var raw: String

    /// All challenges of a header value; commas separate both parameters and challenges, and
    /// may appear inside quoted values (`scope="repository:a:pull,push"`).
    static func parse(_ header: String) -> [WWWAuthenticate] {
        var challenges: [WWWAuthenticate] = []
        let characters = Array(header)
        var index = 0
        func skip(_ set: Set<Character>) { while index < characters.count && set.contains(characters[index]) { index += 1 } }
        func token() -> String {
            let start = index
            while index < characters.count && !" \t,=\"".contains(characters[index]) { index += 1 }
            return String(characters[start..<index])
        }
        while index < characters.count {
            skip([" ", "\t", ","])
            let start = index
            let word = token()
            if word.isEmpty {
                index += 1
                continue
            }
            skip([" ", "\t"])
            if index < characters.count && characters[index] == "=" && !challenges.isEmpty {
                // auth-param of the current challenge.
                index += 1
                skip([" ", "\t"])
                var value = ""
                if index < characters.count && characters[index] == "\"" {
                    index += 1
                    while index < characters.count && characters[index] != "\"" {
                        if characters[index] == "\\" && index + 1 < characters.count { index += 1 }
                        value.append(characters[index])
                        index += 1
                    }
                    index += 1
                } else {
                    value = token()
                }
                challenges[challenges.count - 1].parameters[word.lowercased()] = value
                challenges[challenges.count - 1].raw += String(characters[start..<min(index, characters.count)])
            } else {
                challenges.append(WWWAuthenticate(scheme: word.lowercased(), parameters: [:], raw: word + " "))
            }
        }
        return challenges
    }
}

/// What one push did.
public struct PushReport: Codable, Sendable, Equatable {
    /// Blob digests sent to the registry, config first.
    public var uploaded: [String]
    /// Blob digests the registry had already: not sent again.
    public var existing: [String]
    public var manifestDigest: String
    /// `host/repository:tag` (or `@digest`) as pushed.
    public var reference: String

    /// snake_case, as kiln's other JSON (docs/json.md).
    enum CodingKeys: String, CodingKey {
        case uploaded, existing
        case manifestDigest = "manifest_digest"
        case reference
    }
}

public enum Registry {
    /// Pushes the layout's manifest (the one tagged `tag` there, else its only one) to
    /// `reference`: every blob the registry lacks, then the manifest under the reference's tag.
    public static func push(
        layout: OCILayout, tag: String? = nil, to reference: RegistryReference, client: RegistryClient? = nil,
        progress: (String) -> Void = { _ in }
    ) async throws -> PushReport {
        let client = try client ?? RegistryClient.fromEnvironment(reference: reference)
        guard client.host == reference.host, client.repository == reference.repository else {
            throw KilnError(
                .internalError, "a client for \(client.host)/\(client.repository) cannot push to \(reference)")
        }
        let (descriptor, manifest, data) = try layout.manifest(tag: tag)
        if let wanted = reference.digest, wanted != descriptor.digest {
            throw KilnError(.invalidInput, "\(reference) names digest \(wanted), but the layout's manifest is \(descriptor.digest)")
        }
        var seen: Set<String> = []
        var uploaded: [String] = []
        var existing: [String] = []
        for blob in [manifest.config] + manifest.layers where seen.insert(blob.digest).inserted {
            let short = String(blob.digest.prefix(19))
            if try await client.blobExists(blob.digest) {
                existing.append(blob.digest)
                progress("\(short): already in \(reference.host)/\(reference.repository)")
                continue
            }
            progress("\(short): uploading \(blob.size) bytes")
            try await client.uploadBlob(path: layout.blobPath(blob.digest), descriptor: blob)
            uploaded.append(blob.digest)
        }
        let digest = try await client.putManifest(
            data: data, mediaType: descriptor.mediaType, reference: reference.manifestReference)
        guard digest == descriptor.digest else {
            throw KilnError(
                .io, "registry \(reference.host): stored the manifest as \(digest), but it is \(descriptor.digest)")
        }
        progress("\(reference): manifest \(digest)")
        return PushReport(uploaded: uploaded, existing: existing, manifestDigest: digest, reference: reference.description)
    }
}
