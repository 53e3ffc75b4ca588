import Foundation
import KilnCore

/// Media types of the OCI image spec (v1.1) that kiln writes.
public enum OCIMediaType {
    public static let manifest = "application/vnd.oci.image.manifest.v1+json"
    public static let index = "application/vnd.oci.image.index.v1+json"
    public static let config = "application/vnd.oci.image.config.v1+json"
    public static let layerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
}

/// A content descriptor: what a manifest or index says about one blob.
public struct OCIDescriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    /// `sha256:<hex>`.
    public var digest: String
    public var size: Int64
    public var annotations: [String: String]?

    public init(mediaType: String, digest: String, size: Int64, annotations: [String: String]? = nil) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
    }

    /// The hex part of `digest`, which names the blob under `blobs/sha256/`.
    public var hex: String { String(digest.drop(while: { $0 != ":" }).dropFirst()) }
}

public struct OCIManifest: Codable, Sendable, Equatable {
    public var schemaVersion = 2
    public var mediaType = OCIMediaType.manifest
    public var config: OCIDescriptor
    public var layers: [OCIDescriptor]
    public var annotations: [String: String]?

    public init(config: OCIDescriptor, layers: [OCIDescriptor], annotations: [String: String]? = nil) {
        self.config = config
        self.layers = layers
        self.annotations = annotations
    }
}

public struct OCIIndex: Codable, Sendable, Equatable {
    public var schemaVersion = 2
    public var mediaType = OCIMediaType.index
    public var manifests: [OCIDescriptor]

    public init(manifests: [OCIDescriptor]) { self.manifests = manifests }
}

/// An OCI image layout directory (`oci-layout`, `index.json`, `blobs/sha256/<hex>`), the form
/// `kiln export --format oci` writes and `--push` reads.
public struct OCILayout: Sendable {
    public let path: String
    /// The annotation an index entry carries its tag in.
    public static let refName = "org.opencontainers.image.ref.name"

    public init(path: String) { self.path = path }

    public func blobPath(_ digest: String) -> String {
        path + "/blobs/sha256/" + OCIDescriptor(mediaType: "", digest: digest, size: 0).hex
    }

    public func readIndex() throws -> OCIIndex {
        let data = try Data(contentsOf: URL(fileURLWithPath: path + "/index.json"))
        do { return try JSONDecoder().decode(OCIIndex.self, from: data) } catch {
            throw KilnError(.invalidInput, "\(path)/index.json is not an OCI image index", cause: error)
        }
    }

    /// The manifest the index names (with `tag` when given, else the only one) and its descriptor.
    public func manifest(tag: String? = nil) throws -> (OCIDescriptor, OCIManifest, Data) {
        let index = try readIndex()
        let candidates = index.manifests.filter { tag == nil || $0.annotations?[Self.refName] == tag }
        guard let descriptor = candidates.first, candidates.count == 1 || tag != nil else {
            throw KilnError(
                .invalidInput,
                "\(path): \(candidates.isEmpty ? "no manifest" : "\(candidates.count) manifests")\(tag.map { " tagged \($0)" } ?? "")")
        }
        let data = try Data(contentsOf: URL(fileURLWithPath: blobPath(descriptor.digest)))
        do { return (descriptor, try JSONDecoder().decode(OCIManifest.self, from: data), data) } catch {
            throw KilnError(.invalidInput, "\(path): manifest \(descriptor.digest) is not an OCI image manifest", cause: error)
        }
    }
}

// `mediaType` is optional in manifests and indexes before image-spec 1.1, and umoci and
// others leave it out: decode it as the type it must be.
extension OCIManifest {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = try container.decode(Int.self, forKey: .schemaVersion)
        mediaType = try container.decodeIfPresent(String.self, forKey: .mediaType) ?? OCIMediaType.manifest
        config = try container.decode(OCIDescriptor.self, forKey: .config)
        layers = try container.decode([OCIDescriptor].self, forKey: .layers)
        annotations = try container.decodeIfPresent([String: String].self, forKey: .annotations)
    }
}

extension OCIIndex {
    public init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        schemaVersion = try container.decode(Int.self, forKey: .schemaVersion)
        mediaType = try container.decodeIfPresent(String.self, forKey: .mediaType) ?? OCIMediaType.index
        manifests = try container.decode([OCIDescriptor].self, forKey: .manifests)
    }
}
