import Foundation
import KilnCore

/// What a provider other than qemu made of an image, kept as `artifact.json` in the image's
/// blob directory in place of `disk.qcow2`: the blob's digest is that file's SHA-256, so the
/// store stays content-addressed whether the image is files beside it (a plugin's tarball) or
/// lives with the provider (an AMI, which the id names).
public struct ProviderArtifact: Codable, Sendable, Equatable {
    public static let fileName = "artifact.json"

    /// The provider that made it, and that lifecycle changes and purges go to.
    public var provider: String
    /// The provider's own id of the image (an AMI id); nil when the files are the image.
    public var id: String?
    /// What else the provider needs to find the image again (aws: `region`, `snapshots`).
    public var details: [String: String]
    /// Files beside `artifact.json`, by name, with their SHA-256.
    public var files: [String: String]

    public init(provider: String, id: String? = nil, details: [String: String] = [:], files: [String: String] = [:]) {
        (self.provider, self.id, self.details, self.files) = (provider, id, details, files)
    }

    /// Canonical bytes: the same artifact always hashes to the same digest.
    public var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }

    /// One line for logs and `kiln inspect`: `aws ami-0abc (us-east-1)`, `chroot rootfs.tar`.
    public var summary: String {
        var text = provider + " " + (id ?? files.keys.sorted().joined(separator: ", "))
        if let region = details["region"] { text += " (\(region))" }
        return text
    }

    public static func read(from directory: String) throws -> ProviderArtifact? {
        let path = directory + "/" + fileName
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(ProviderArtifact.self, from: data)
        } catch {
            throw KilnError(.storeInconsistent, "\(path) is not a provider artifact record", cause: error as NSError)
        }
    }
}

/// The names of an image's files in its blob directory (`images/<digest>/`).
public enum ImageFiles {
    /// A qemu image's disk: a qcow2 overlay on its backing blob's disk.
    public static let disk = "disk.qcow2"
    /// The kernel and initrd a disk boots with, beside it.
    public static let kernel = "vmlinuz"
    public static let initrd = "initrd.img"
    /// A disk blob with files beside its disk lists them all, with their SHA-256, here; the
    /// blob's digest is then this file's SHA-256, so every file of the blob is covered by its
    /// address (a planted kernel is a changed blob, not a passenger).
    public static let manifest = "blob.json"
}

/// `blob.json`: the files of a disk blob and their SHA-256, in canonical JSON.
public struct BlobManifest: Codable, Sendable, Equatable {
    public var files: [String: String]

    public init(files: [String: String]) { self.files = files }

    public var json: Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return (try? encoder.encode(self)) ?? Data()
    }

    public static func read(from directory: String) throws -> BlobManifest? {
        let path = directory + "/" + ImageFiles.manifest
        guard let data = FileManager.default.contents(atPath: path) else { return nil }
        do {
            return try JSONDecoder().decode(BlobManifest.self, from: data)
        } catch {
            throw KilnError(.storeInconsistent, "\(path) is not a blob manifest", cause: error as NSError)
        }
    }
}
