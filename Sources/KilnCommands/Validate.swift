import ArgumentParser
import Foundation
import KilnCore

struct Validate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Check templates and print every error at once.",
        discussion: """
            Errors are printed as file:line:col: error: message, all of them, and kiln exits \
            with status 2. Nothing is written to the store. A parent family that no template \
            of the directory defines is accepted when the catalog has an image of it.
            """)

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let (_, graph) = try templates.load(store: try store.openIfPresent())
        let families = graph.order.map(\.family)
        let count = "\(families.count) template\(families.count == 1 ? "" : "s")"
        // A big graph's order is what `kiln plan` is for; the line stays readable.
        if families.count <= 12 {
            print("ok: \(count): \(families.joined(separator: " -> "))")
        } else {
            print("ok: \(count): \(families.prefix(5).joined(separator: " -> ")) -> ... -> \(families.suffix(2).joined(separator: " -> "))")
        }
    }
}
