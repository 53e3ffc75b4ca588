import Foundation
import KilnCore
import KilnModel

extension Store {
    /// The file a blob's digest is the hash of: its disk, or a provider's `artifact.json`.
    public static func primaryFile(in directory: String) -> String {
        let artifact = directory + "/" + ProviderArtifact.fileName
        return FileManager.default.fileExists(atPath: artifact) ? artifact : directory + "/" + diskName
    }

    /// The provider artifact of `image`; nil for a disk image (qemu's).
    public func artifact(of image: ImageRecord) throws -> ProviderArtifact? {
        try ProviderArtifact.read(from: blobDirectory(digest: image.digest))
    }

    /// The files an artifact lists: present and hashing to what it says.
    public static func checkArtifactFiles(in directory: String) throws {
        guard let artifact = try ProviderArtifact.read(from: directory) else { return }
        for (name, digest) in artifact.files.sorted(by: { $0.key < $1.key }) {
            let path = directory + "/" + name
            guard FileManager.default.fileExists(atPath: path) else {
                throw KilnError(.storeInconsistent, "\(path) is missing (the artifact record lists it)")
            }
            let actual = try Hashing.sha256Hex(fileAt: path)
            guard actual == digest else {
                throw KilnError(
                    .storeInconsistent,
                    "\(path) is damaged: it hashes to \(actual.prefix(12)), the artifact record says \(digest.prefix(12))")
            }
        }
    }
}
