import Foundation
import KilnModel

/// Which disk layout an image has (docs/images.md). Since image format 2, a debootstrap base
/// is a partitioned disk with boot loaders; earlier bases were bare ext4 filesystems that boot
/// only with kiln's direct kernel boot, and so is every layer on them.
extension Catalog {
    /// Whether `image`'s chain starts at a debootstrap base made before bootable images.
    public func standsOnBareFilesystem(_ image: ImageRecord) throws -> Bool {
        var root = image
        var seen: Set<String> = [image.name]
        while let name = root.parent, let parent = try self.image(named: name), seen.insert(parent.name).inserted {
            root = parent
        }
        guard root.sourceKind == "debootstrap" else { return false }
        let inputs = root.keyInputs.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
        return (inputs["kiln.image-format"] ?? "1") == "1"
    }

    /// What to tell someone about to use such an image outside kiln.
    public static func bareFilesystemNotice(_ image: ImageRecord) -> String {
        "\(image.name) stands on a base made before kiln's bootable images (a bare filesystem, no boot loader): "
            + "it boots only inside kiln; rebuild its base (kiln build) to get a disk that boots on its own (docs/images.md)"
    }
}
