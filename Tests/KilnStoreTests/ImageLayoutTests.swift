import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnStore

@Suite("Image layout (bare filesystems of stores made before bootable images)")
struct ImageLayoutTests {
    @Test("an image stands on a bare filesystem exactly when its chain starts at a debootstrap base of image format 1 (or none recorded)")
    func bareFilesystemChains() throws {
        let store = try temporaryStore(.sqlite)
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        func commit(_ family: String, parent: String? = nil, source: String = "image", format: String?) throws -> ImageRecord {
            var image = draft(family, digest: family, parent: parent)
            image.sourceKind = source
            image.keyInputs = format.map { #"{"kiln.image-format":"\#($0)"}"# }
            return try store.catalog.commit(image)
        }
        let oldBase = try commit("old-base", source: "debootstrap", format: "1")
        let oldApp = try commit("old-app", parent: oldBase.name, format: "2")
        let olderBase = try commit("older-base", source: "debootstrap", format: nil)
        let newBase = try commit("new-base", source: "debootstrap", format: "2")
        let newApp = try commit("new-app", parent: newBase.name, format: "2")
        let fileBase = try commit("file-base", source: "file", format: "1")
        #expect(try store.catalog.standsOnBareFilesystem(oldBase))
        #expect(try store.catalog.standsOnBareFilesystem(oldApp), "a layer on an old base is bare whatever its own key says")
        #expect(try store.catalog.standsOnBareFilesystem(olderBase))
        #expect(try !store.catalog.standsOnBareFilesystem(newBase))
        #expect(try !store.catalog.standsOnBareFilesystem(newApp))
        #expect(try !store.catalog.standsOnBareFilesystem(fileBase), "a disk from outside boots its own way")
        #expect(Catalog.bareFilesystemNotice(oldApp).contains("rebuild its base"))
    }
}
