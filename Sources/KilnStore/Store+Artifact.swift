import Foundation
import KilnCore
import KilnModel

extension Store {
    /// The file a blob's digest is the hash of: a provider's `artifact.json`, a disk blob's
    /// `blob.json` (when files sit beside the disk), or the disk alone.
    public static func primaryFile(in directory: String) -> String {
        for name in [ProviderArtifact.fileName, ImageFiles.manifest] where FileManager.default.fileExists(atPath: directory + "/" + name) {
            return directory + "/" + name
        }
        return directory + "/" + diskName
    }

    /// The file a blob's digest hashes (its name) and the files that file lists, with their SHA-256.
    public static func blobFiles(in directory: String) throws -> (primary: String, listed: [String: String]) {
        if let artifact = try ProviderArtifact.read(from: directory) { return (ProviderArtifact.fileName, artifact.files) }
        if let manifest = try BlobManifest.read(from: directory) { return (ImageFiles.manifest, manifest.files) }
        return (diskName, [:])
    }

    /// The blob `digest` and each blob it is an overlay on, down to its source disk, as the
    /// catalog records them.
    public func blobChain(from digest: String) throws -> [String] {
        var chain: [String] = []
        var next: String? = digest
        while let digest = next, !chain.contains(digest) {
            chain.append(digest)
            next = try catalog.image(digest: digest)?.backingDigest
        }
        return chain
    }

    /// The provider artifact of `image`; nil for a disk image (qemu's).
    public func artifact(of image: ImageRecord) throws -> ProviderArtifact? {
        try ProviderArtifact.read(from: blobDirectory(digest: image.digest))
    }

    /// The files an artifact or a blob manifest lists: present and hashing to what it says;
    /// and no file in the blob that its primary file does not cover.
    public static func checkArtifactFiles(in directory: String) throws {
        let (primary, listed) = try blobFiles(in: directory)
        let present = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        for name in present.sorted() where name != primary && listed[name] == nil {
            throw KilnError(
                .storeInconsistent, "\(directory)/\(name) is not covered by the blob's digest (no \(ImageFiles.manifest) lists it)")
        }
        for (name, digest) in listed.sorted(by: { $0.key < $1.key }) {
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                throw KilnError(.storeInconsistent, "\(path) is missing (the blob's \(primary) lists it)")
            }
            let actual = try Hashing.sha256Hex(fileAt: path)
            guard actual == digest else {
                throw KilnError(
                    .storeInconsistent,
                    "\(path) is damaged: it hashes to \(actual.prefix(12)), the blob's \(primary) says \(digest.prefix(12))")
            }
        }
    }
}
