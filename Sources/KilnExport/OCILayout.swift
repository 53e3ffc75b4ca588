import Foundation
import KilnCore
import KilnRegistry

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
