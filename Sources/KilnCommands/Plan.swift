import ArgumentParser
import Foundation
import KilnBuild
import KilnGraph
import KilnStore
import KilnTemplates

struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the image graph in build order and what each image is built from.")

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON.")
    var json = false

    struct Entry: Codable {
        var family: String
        var file: String
        var from: String
        var parent: String?
        var steps: [String]
    }

    func run() async throws {
        let store = try store.openIfPresent()
        let (_, graph) = try templates.load(store: store)
        let entries = try graph.order.map { template -> Entry in
            var from: String
            switch template.source {
            case .image(let family):
                if graph.template(family) != nil {
                    from = "image \(family) (built in this run)"
                } else {
                    from = "image \(try store?.catalog.head(of: family)?.name ?? family) (from the catalog)"
                }
            case .debootstrap(let spec):
                from = "debootstrap \(spec.suite) (\(spec.variant), mirror \(spec.mirror ?? DebianMirror.host() ?? "unset"))"
                if !spec.include.isEmpty { from += " + \(spec.include.joined(separator: ","))" }
            case .file(let path, _): from = "file \(path)"
            case .url(let url, _): from = "url \(url)"
            }
            return Entry(
                family: template.family, file: template.file, from: from, parent: template.parentFamily,
                steps: template.steps.map(\.title))
        }
        if json {
            try printJSON(entries)
            return
        }
        print("build order (\(entries.count) image\(entries.count == 1 ? "" : "s")):")
        for (index, entry) in entries.enumerated() {
            print("  \(index + 1). \(entry.family)")
            print("     from   \(entry.from)")
            print("     steps  \(entry.steps.count)")
            for step in entry.steps { print("            \(step)") }
        }
    }
}
