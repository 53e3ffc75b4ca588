import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

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
    let base: String
    let credentials: RegistryCredentials?
    let retryDelays: [Duration]
    let session: URLSession
    let challenges = ChallengeCatcher()
    let auth = Locked(AuthState())

    struct AuthState: Sendable {
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

    var pullScope: String { "repository:\(repository):pull" }
    var pushScope: String { "repository:\(repository):pull,push" }

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
        // "push sha256:0123456789ab": the digest names the layer the way registries list it.
        let progress = ProgressMeter("push \(descriptor.digest.prefix(19))", total: descriptor.size)
        defer { progress.finish() }
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
                progress.set(done: offset)
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
}
