import Crypto
import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// A manifest as a registry served it.
public struct FetchedManifest: Sendable {
    public var data: Data
    public var mediaType: String
    /// `sha256:<hex>` of `data`, computed here: a registry's `Docker-Content-Digest` is not trusted.
    public var digest: String

    public func decode() throws -> OCIManifest {
        do { return try JSONDecoder().decode(OCIManifest.self, from: data) } catch {
            throw KilnError(.io, "manifest \(digest) is not an OCI image manifest", cause: error)
        }
    }
}

/// What asking a registry to delete a manifest came to.
public enum ManifestDeletion: Sendable, Equatable {
    case deleted
    /// It was not there (already deleted, or never pushed).
    case absent
    /// The registry does not allow deletes (HTTP 405, or `UNSUPPORTED`): its message.
    case refused(String)
}

// Reading from a registry: manifests by tag or digest, blobs in ranged chunks that resume where
// an earlier attempt stopped and are checked against their digest before they are kept.
extension RegistryClient {
    static let manifestTypes = [OCIMediaType.manifest, OCIMediaType.index].joined(separator: ", ")

    /// The manifest under `reference` (a tag or `sha256:…`); nil when the registry has none.
    /// A manifest asked for by digest must hash to it.
    public func fetchManifest(_ reference: String) async throws -> FetchedManifest? {
        let url = try endpoint("/v2/\(repository)/manifests/\(reference)")
        let response = try await send("GET", url, headers: ["Accept": Self.manifestTypes], scope: pullScope, idempotent: true)
        switch response.status {
        case 200: break
        case 404: return nil
        default: throw failure("GET", url, response)
        }
        // A manifest is small; anything large is not one (and is not read into a decoder).
        guard response.body.count <= 4 << 20 else {
            throw KilnError(.io, "registry \(host): manifest \(reference) is \(response.body.count) bytes, more than a manifest can be")
        }
        let digest = "sha256:" + Hashing.sha256Hex(response.body)
        if reference.hasPrefix("sha256:"), digest != reference {
            throw KilnError(.io, "registry \(host): served manifest \(reference) with bytes that hash to \(digest): refused")
        }
        let type = response.headers["content-type"]?.split(separator: ";").first.map(String.init) ?? OCIMediaType.manifest
        return FetchedManifest(data: response.body, mediaType: type, digest: digest)
    }

    /// Whether the registry has a manifest under `reference`, without reading it.
    public func manifestExists(_ reference: String) async throws -> Bool {
        let url = try endpoint("/v2/\(repository)/manifests/\(reference)")
        let response = try await send("HEAD", url, headers: ["Accept": Self.manifestTypes], scope: pullScope, idempotent: true)
        switch response.status {
        case 200: return true
        case 404: return false
        default: throw failure("HEAD", url, response)
        }
    }

    /// Deletes the manifest `digest` (and with it every tag that names it).
    public func deleteManifest(_ digest: String) async throws -> ManifestDeletion {
        let url = try endpoint("/v2/\(repository)/manifests/\(digest)")
        let response = try await send("DELETE", url, scope: pushScope, idempotent: true)
        switch response.status {
        case 200, 202: return .deleted
        case 404: return .absent
        case 405: return .refused("HTTP 405" + Self.errorMessages(response.body))
        default:
            let detail = Self.errorMessages(response.body)
            if detail.contains("UNSUPPORTED") || detail.lowercased().contains("not supported") {
                return .refused("HTTP \(response.status)" + detail)
            }
            throw failure("DELETE", url, response)
        }
    }

    /// A small blob (a config, an index) read whole and checked against its digest.
    public func smallBlob(_ descriptor: OCIDescriptor) async throws -> Data {
        guard descriptor.size <= 4 << 20 else {
            throw KilnError(.internalError, "blob \(descriptor.digest) is \(descriptor.size) bytes: download it to a file")
        }
        let url = try endpoint("/v2/\(repository)/blobs/\(descriptor.digest)")
        let response = try await send("GET", url, scope: pullScope, idempotent: true)
        guard response.status == 200 else { throw failure("GET", url, response) }
        let actual = "sha256:" + Hashing.sha256Hex(response.body)
        guard actual == descriptor.digest, Int64(response.body.count) == descriptor.size else {
            throw wrongBytes(descriptor, actual: actual)
        }
        return response.body
    }

    /// What one download did.
    public struct Download: Sendable, Equatable {
        /// Bytes already on disk from an earlier, interrupted attempt: not fetched again.
        public var resumedFrom: Int64
        public var fetched: Int64
    }

    /// Downloads the blob to `path`, through `path.partial`: bytes an interrupted attempt left
    /// there are kept and the rest is asked for with HTTP ranges, one ``chunkSize`` at a time
    /// (memory stays bounded; a lost connection costs one chunk, and is retried). The file
    /// appears under `path` only once its bytes hash to the descriptor's digest; wrong bytes are
    /// removed and refused.
    @discardableResult
    public func downloadBlob(_ descriptor: OCIDescriptor, to path: String) async throws -> Download {
        let partial = path + ".partial"
        let fm = FileManager.default
        var hasher = SHA256()
        var offset: Int64 = 0
        // Only a regular file of ours is resumed: anything else under that name (a link, a
        // directory) is removed, never followed.
        var info = stat()
        let regular = lstat(partial, &info) == 0 && info.st_mode & S_IFMT == S_IFREG
        if !regular { try? fm.removeItem(atPath: partial) }
        if regular, let size = (try? fm.attributesOfItem(atPath: partial))?[.size] as? Int64, size > 0, size <= descriptor.size {
            // What an earlier attempt wrote is hashed again, not trusted to be what it asked for:
            // the final digest covers it either way.
            offset = try Self.hash(partial, into: &hasher)
        } else {
            try? fm.removeItem(atPath: partial)
            guard fm.createFile(atPath: partial, contents: nil, attributes: [.posixPermissions: 0o600]) else {
                throw KilnError(.io, "cannot create \(partial)")
            }
        }
        let resumedFrom = offset
        let fd = open(partial, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw KilnError(.io, "cannot write \(partial): \(String(cString: strerror(errno)))") }
        let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: false)
        defer { try? handle.close() }
        let url = try endpoint("/v2/\(repository)/blobs/\(descriptor.digest)")
        let progress = ProgressMeter("pull \(descriptor.digest.prefix(19))", total: descriptor.size)
        defer { progress.finish() }
        progress.set(done: offset)
        while offset < descriptor.size {
            let last = min(offset + Int64(chunkSize), descriptor.size) - 1
            // identity: a compressed answer would be inflated in memory, beyond any bound.
            let response = try await send(
                "GET", url, headers: ["Range": "bytes=\(offset)-\(last)", "Accept-Encoding": "identity"], scope: pullScope,
                idempotent: true)
            let chunk: Data
            switch response.status {
            case 206:
                guard Int64(response.body.count) == last - offset + 1 else {
                    throw KilnError(
                        .io,
                        "registry \(host): GET \(url.path) bytes \(offset)-\(last): got \(response.body.count) bytes")
                }
                chunk = response.body
            case 200 where offset == 0:
                // A registry that ignores ranges sends the whole blob at once: all of it, or an error
                // (an empty or short answer would otherwise be asked for again and again).
                guard Int64(response.body.count) == descriptor.size else {
                    throw KilnError(
                        .io,
                        "registry \(host): GET \(url.path) ignored the range and sent \(response.body.count) of \(descriptor.size) bytes")
                }
                chunk = response.body
            case 200:
                throw KilnError(
                    .io, "registry \(host): GET \(url.path) ignored the range bytes=\(offset)-\(last): cannot resume the download")
            default:
                throw failure("GET", url, response)
            }
            guard offset + Int64(chunk.count) <= descriptor.size else {
                try? fm.removeItem(atPath: partial)
                throw KilnError(
                    .io, "registry \(host): blob \(descriptor.digest) is longer than its descriptor's \(descriptor.size) bytes: refused")
            }
            do { try handle.write(contentsOf: chunk) } catch {
                throw KilnError(.io, "cannot write \(partial)", cause: error as NSError)
            }
            hasher.update(data: chunk)
            offset += Int64(chunk.count)
            progress.set(done: offset)
        }
        let actual = "sha256:" + hasher.finalize().hex
        guard actual == descriptor.digest else {
            try? fm.removeItem(atPath: partial)
            throw wrongBytes(descriptor, actual: actual)
        }
        do { try handle.synchronize() } catch { throw KilnError(.io, "cannot sync \(partial)", cause: error as NSError) }
        guard rename(partial, path) == 0 else {
            throw KilnError(.io, "cannot move \(partial) to \(path): \(String(cString: strerror(errno)))")
        }
        return Download(resumedFrom: resumedFrom, fetched: offset - resumedFrom)
    }

    func wrongBytes(_ descriptor: OCIDescriptor, actual: String) -> KilnError {
        KilnError(
            .io,
            "registry \(host): blob \(descriptor.digest) arrived as bytes that hash to \(actual): refused, nothing kept")
    }

    /// Feeds a file to `hasher` and returns its length.
    private static func hash(_ path: String, into hasher: inout SHA256) throws -> Int64 {
        guard let handle = FileHandle(forReadingAtPath: path) else { throw KilnError(.io, "cannot read \(path)") }
        defer { try? handle.close() }
        var length: Int64 = 0
        while let chunk = try handle.read(upToCount: 1 << 20), !chunk.isEmpty {
            hasher.update(data: chunk)
            length += Int64(chunk.count)
        }
        return length
    }

    /// The referrers of `digest` (image-spec 1.1): the registry's referrers API when it has one,
    /// else the index under the fallback tag `sha256-<hex>` that clients keep for it.
    public func referrers(of digest: String) async throws -> [OCIDescriptor] {
        let url = try endpoint("/v2/\(repository)/referrers/\(digest)")
        let response = try await send("GET", url, headers: ["Accept": OCIMediaType.index], scope: pullScope, idempotent: true)
        if response.status == 200, let index = try? JSONDecoder().decode(OCIIndex.self, from: response.body) {
            return index.manifests
        }
        guard let fallback = try await fetchManifest(Self.referrersTag(digest)) else { return [] }
        return (try? JSONDecoder().decode(OCIIndex.self, from: fallback.data).manifests) ?? []
    }

    /// Pushes a manifest that has a `subject`; when the registry does not say it indexed it
    /// (no `OCI-Subject` header: no referrers API), adds it to the fallback tag's index.
    public func putReferrer(data: Data, manifest: OCIManifest) async throws -> String {
        guard let subject = manifest.subject else { throw KilnError(.internalError, "a referrer needs a subject") }
        let digest = "sha256:" + Hashing.sha256Hex(data)
        let url = try endpoint("/v2/\(repository)/manifests/\(digest)")
        let response = try await send(
            "PUT", url, headers: ["Content-Type": OCIMediaType.manifest], body: data, scope: pushScope, idempotent: true)
        guard response.status == 201 else { throw failure("PUT", url, response) }
        if response.headers["oci-subject"] == subject.digest { return digest }
        let tag = Self.referrersTag(subject.digest)
        var index = OCIIndex(manifests: [])
        if let existing = try await fetchManifest(tag) {
            index = (try? JSONDecoder().decode(OCIIndex.self, from: existing.data)) ?? index
        }
        index.manifests.removeAll { $0.digest == digest }
        index.manifests.append(
            OCIDescriptor(
                mediaType: OCIMediaType.manifest, digest: digest, size: Int64(data.count), annotations: manifest.annotations,
                artifactType: manifest.artifactType))
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        try await putManifest(data: try encoder.encode(index), mediaType: OCIMediaType.index, reference: tag)
        return digest
    }

    /// `sha256-<hex>`: the tag schema's name for the referrers of `digest`.
    public static func referrersTag(_ digest: String) -> String { digest.replacingOccurrences(of: ":", with: "-") }

    /// Uploads `data` as one blob (a monolithic PUT), unless the registry has it already.
    public func uploadSmallBlob(_ data: Data) async throws -> OCIDescriptor {
        let descriptor = OCIDescriptor(
            mediaType: "application/octet-stream", digest: "sha256:" + Hashing.sha256Hex(data), size: Int64(data.count))
        if try await blobExists(descriptor.digest) { return descriptor }
        let start = try endpoint("/v2/\(repository)/blobs/uploads/")
        let opened = try await send("POST", start, body: Data(), scope: pushScope, idempotent: false)
        guard opened.status == 202 else { throw failure("POST", start, opened) }
        let finish = try appendingQuery(try nextLocation(opened, after: "POST", start), "digest=" + descriptor.digest)
        let closed = try await send(
            "PUT", finish, headers: ["Content-Type": "application/octet-stream"], body: data, scope: pushScope,
            idempotent: false)
        guard closed.status == 201 else { throw failure("PUT", finish, closed) }
        return descriptor
    }
}
