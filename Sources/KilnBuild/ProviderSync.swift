import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

/// Keeps the providers' copies of images (an AMI's tags and deprecation, say) in line with the
/// catalog after lifecycle changes and purges. The catalog stays the truth: what a provider
/// cannot do is a warning, and the next change tries again.
public enum ProviderSync {
    /// After `names` changed state in the catalog: their providers are told.
    public static func changed(_ names: [String], in store: Store, warn: @escaping @Sendable (String) -> Void) async {
        for name in names {
            guard let image = try? store.catalog.image(named: name), let artifact = try? store.artifact(of: image) else { continue }
            do {
                let provider = try Providers.named(artifact.provider, pluginDirectory: store.pluginDirectory)
                try await provider.imageChanged(image, artifact: artifact, warn: warn)
            } catch {
                warn("could not update \(artifact.summary) for \(name): \(error)")
            }
        }
    }

    /// Before a purge removes `image`'s blob: its provider deletes its copy. Throws when it
    /// cannot, and the image then stays unpurged for the next `kiln gc`.
    public static func delete(_ image: ImageRecord, in store: Store, warn: @escaping @Sendable (String) -> Void) async throws {
        guard let artifact = try store.artifact(of: image) else { return }
        let provider = try Providers.named(artifact.provider, pluginDirectory: store.pluginDirectory)
        try await provider.deleteImage(artifact, warn: warn)
    }
}
