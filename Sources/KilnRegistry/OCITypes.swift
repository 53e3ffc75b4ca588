import Foundation

/// Media types of the OCI image spec (v1.1) that kiln writes.
public enum OCIMediaType {
    public static let manifest = "application/vnd.oci.image.manifest.v1+json"
    public static let index = "application/vnd.oci.image.index.v1+json"
    public static let config = "application/vnd.oci.image.config.v1+json"
    public static let layerGzip = "application/vnd.oci.image.layer.v1.tar+gzip"
    /// The config of an artifact that has none (image-spec 1.1): the two bytes `{}`.
    public static let empty = "application/vnd.oci.empty.v1+json"
}

/// A content descriptor: what a manifest or index says about one blob.
public struct OCIDescriptor: Codable, Sendable, Equatable {
    public var mediaType: String
    /// `sha256:<hex>`.
    public var digest: String
    public var size: Int64
    public var annotations: [String: String]?
    /// Of a manifest in an index (a referrer): the artifact's type.
    public var artifactType: String?

    public init(
        mediaType: String, digest: String, size: Int64, annotations: [String: String]? = nil, artifactType: String? = nil
    ) {
        self.mediaType = mediaType
        self.digest = digest
        self.size = size
        self.annotations = annotations
        self.artifactType = artifactType
    }

    /// The empty config of an artifact manifest: `{}`, its digest and size fixed by the spec.
    public static let emptyConfig = OCIDescriptor(
        mediaType: OCIMediaType.empty, digest: "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a",
        size: 2)
    public static let emptyConfigBytes = Data("{}".utf8)

    /// The hex part of `digest`, which names the blob under `blobs/sha256/`.
    public var hex: String { String(digest.drop(while: { $0 != ":" }).dropFirst()) }
}

public struct OCIManifest: Codable, Sendable, Equatable {
    public var schemaVersion = 2
    public var mediaType = OCIMediaType.manifest
    public var config: OCIDescriptor
    public var layers: [OCIDescriptor]
    public var annotations: [String: String]?
    /// An artifact's type (image-spec 1.1); nil for a container image.
    public var artifactType: String?
    /// The manifest this one is about (a signature's image): the referrers API lists it there.
    public var subject: OCIDescriptor?

    public init(
        config: OCIDescriptor, layers: [OCIDescriptor], annotations: [String: String]? = nil, artifactType: String? = nil,
        subject: OCIDescriptor? = nil
    ) {
        self.config = config
        self.layers = layers
        self.annotations = annotations
        self.artifactType = artifactType
        self.subject = subject
    }
}

public struct OCIIndex: Codable, Sendable, Equatable {
    public var schemaVersion = 2
    public var mediaType = OCIMediaType.index
    public var manifests: [OCIDescriptor]

    public init(manifests: [OCIDescriptor]) { self.manifests = manifests }
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
        artifactType = try container.decodeIfPresent(String.self, forKey: .artifactType)
        subject = try container.decodeIfPresent(OCIDescriptor.self, forKey: .subject)
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
