import Foundation
import KilnCore
import KilnRegistry

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

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
