import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

// The HTTP side of RegistryClient: redirects, Basic and Bearer authentication (RFC 7235
// challenges), retries of transient failures and the registry's error documents.
extension RegistryClient {
    struct Response: Sendable {
        let status: Int
        /// Names lowercased.
        let headers: [String: String]
        let body: Data
        let url: URL
    }

    func endpoint(_ path: String) throws -> URL {
        guard let url = URL(string: base + path) else {
            throw KilnError(.invalidInput, "registry \(host): cannot make a URL of \(path)")
        }
        return url
    }

    /// The upload's next URL: `Location` may be relative, and its query (`_state`) must be kept.
    func nextLocation(_ response: Response, after method: String, _ url: URL) throws -> URL {
        guard let location = response.headers["location"] else {
            throw KilnError(.io, "registry \(host): \(method) \(url.path): HTTP \(response.status) without a Location")
        }
        guard let next = URL(string: location, relativeTo: response.url)?.absoluteURL else {
            throw KilnError(.io, "registry \(host): \(method) \(url.path): Location \"\(location)\" is not a URL")
        }
        return next
    }

    func appendingQuery(_ url: URL, _ item: String) throws -> URL {
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
    func send(
        _ method: String, _ url: URL, headers: [String: String] = [:], body: Data? = nil, scope: String,
        idempotent: Bool
    ) async throws -> Response {
        var reauthenticated = false
        while true {
            var all = headers
            // Credentials go to the registry's own origin only: an upload's Location or a blob's
            // redirect may name another host, which gets no Authorization.
            if let registry = URL(string: base), Origin.same(registry, url), let authorization = authorization(for: scope) {
                all["Authorization"] = authorization
            }
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
        if let credentials {
            guard Self.mayReceiveCredentials(realm: url, registry: base) else {
                throw KilnError(
                    .io,
                    "registry \(host): its token realm \(realm) is plain http while the registry is https: kiln does not send credentials in the clear"
                )
            }
            headers["Authorization"] = basicAuthorization(credentials)
        }
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

    /// A token realm may receive the Basic credentials unless that would downgrade them: an
    /// https registry's realm must be https too (a plain-http registry is loopback or
    /// `--insecure`, where nothing better is to be had).
    static func mayReceiveCredentials(realm: URL, registry: String) -> Bool {
        guard URL(string: registry)?.scheme?.lowercased() == "https" else { return true }
        return realm.scheme?.lowercased() == "https"
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

    func failure(_ method: String, _ url: URL, _ response: Response) -> KilnError {
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
