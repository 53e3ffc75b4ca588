import Foundation
import KilnCore
import KilnModel
import KilnRegistry
import KilnStore

/// How kiln's blobs look in a registry (docs/remote.md): OCI 1.1 artifacts, one layer per file.
///
/// - A **blob manifest** per sealed blob (an image's overlay with its kernel and initrd, or a
///   base's source disk), tagged `kiln-blob-<digest>`: what a runner pulls by the digest the
///   catalog records. Pushed before the catalog names the image.
/// - An **image manifest** with the same layers, tagged with the image's name and annotated
///   with its family and version: what people and other tools pull.
/// - A **build record** (provenance, signature, SLSA statement, build log) whose `subject` is
///   the image manifest: a referrer, found through the referrers API or its fallback tag.
public enum RemoteArtifact {
    public static let imageType = "application/vnd.kiln.image.v1"
    public static let recordType = "application/vnd.kiln.build-record.v1"

    public static let title = "org.opencontainers.image.title"
    public static let blobAnnotation = "dev.kiln.blob"
    public static let familyAnnotation = "dev.kiln.family"
    public static let versionAnnotation = "dev.kiln.version"
    public static let imageAnnotation = "dev.kiln.image"
    public static let buildKeyAnnotation = "dev.kiln.build-key"
    public static let parentDigestAnnotation = "dev.kiln.parent-digest"
    public static let parentAnnotation = "dev.kiln.parent"

    /// The tag a blob's manifest is found under: the catalog's digest of the blob.
    public static func blobTag(_ digest: String) -> String { "kiln-blob-" + digest }

    /// Media types of a blob's files (anything else is octet-stream).
    public static func mediaType(of file: String) -> String {
        switch file {
        case ImageFiles.disk: return "application/vnd.kiln.disk.qcow2"
        case ImageFiles.kernel: return "application/vnd.kiln.kernel"
        case ImageFiles.initrd: return "application/vnd.kiln.initrd"
        case ImageFiles.manifest: return "application/vnd.kiln.blob-files.v1+json"
        case ProviderArtifact.fileName: return "application/vnd.kiln.provider-artifact.v1+json"
        case RecordFile.provenance.rawValue: return "application/vnd.kiln.provenance.v1+json"
        case RecordFile.signature.rawValue: return "application/vnd.kiln.signature.v1+json"
        case RecordFile.statement.rawValue: return "application/vnd.in-toto+json"
        case RecordFile.log.rawValue: return "application/vnd.kiln.build-log.tar+zstd"
        default: return "application/octet-stream"
        }
    }

    /// The files of a build record, by their title in it.
    public enum RecordFile: String, CaseIterable, Sendable {
        case provenance = "provenance.json"
        case signature = "provenance.sig"
        case statement = "provenance.intoto.jsonl"
        case log = "build-log.tar.zst"

        /// Where the file lives in a store for `image`.
        public func path(in store: Store, for image: ImageRecord) -> String {
            switch self {
            case .provenance: return store.provenancePath(of: image.name)
            case .signature: return store.signaturePath(of: image.name)
            case .statement: return store.attestationPath(of: image.name)
            case .log: return store.absolute(image.log)
            }
        }
    }

    /// A blob's files as layers, from what the store sealed: the digest is the primary file's,
    /// and the files it lists carry their own digests, so nothing is hashed again here (the
    /// registry checks each upload against its digest).
    public static func layers(of digest: String, in store: Store) throws -> [(descriptor: OCIDescriptor, path: String)] {
        let directory = store.blobDirectory(digest: digest)
        guard FileManager.default.fileExists(atPath: Store.primaryFile(in: directory)) else {
            throw KilnError(.notFound, "the blob \(digest.prefix(12)) is not in this store (\(directory))")
        }
        let (primary, listed) = try Store.blobFiles(in: directory)
        let files = [(primary, digest)] + listed.sorted { $0.key < $1.key }.map { ($0.key, $0.value) }
        return try files.map { name, hex in
            let path = directory + "/" + name
            guard let size = (try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? Int64 else {
                throw KilnError(.storeInconsistent, "\(path) is missing (the blob \(digest.prefix(12)) lists it)")
            }
            return (OCIDescriptor(mediaType: mediaType(of: name), digest: "sha256:" + hex, size: size, annotations: [title: name]), path)
        }
    }

    static func manifest(
        layers: [OCIDescriptor], type: String, annotations: [String: String], subject: OCIDescriptor? = nil
    ) throws -> (OCIManifest, Data) {
        let manifest = OCIManifest(
            config: .emptyConfig, layers: layers, annotations: annotations, artifactType: type, subject: subject)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (manifest, try encoder.encode(manifest))
    }

    /// The annotations of an image's manifest: what it is, what it stands on.
    static func annotations(of image: ImageRecord) -> [String: String] {
        var annotations = [
            blobAnnotation: image.digest, familyAnnotation: image.family, versionAnnotation: image.version,
            imageAnnotation: image.name,
        ]
        annotations[buildKeyAnnotation] = image.buildKey
        annotations[parentDigestAnnotation] = image.backingDigest
        annotations[parentAnnotation] = image.parent
        return annotations
    }

    /// Layer titles are file names kiln writes into a directory: a registry's answer must not
    /// name a path, a hidden file or anything else.
    static func isSafeFileName(_ name: String) -> Bool {
        guard let first = name.utf8.first, first != UInt8(ascii: "."), name.utf8.count <= 100 else { return false }
        return name.utf8.allSatisfy { byte in
            (0x30...0x39).contains(byte) || (0x41...0x5A).contains(byte) || (0x61...0x7A).contains(byte)
                || byte == UInt8(ascii: ".") || byte == UInt8(ascii: "-") || byte == UInt8(ascii: "_")
        }
    }
}
