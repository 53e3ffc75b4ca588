import ArgumentParser
import Foundation
import KilnBuild
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates

struct Plan: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the build order, what each image is built from, and whether (and why) it will be rebuilt.")

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Plan as if every image were rebuilt.")
    var force = false

    struct Entry: Codable {
        var family: String
        var file: String
        var from: String
        var parent: String?
        var steps: [String]
        /// The `test:` steps (docs/testing.md).
        var tests: [String]
        var action: String
        /// The READY image built from the same inputs, when up to date.
        var image: String?
        var reasons: [String]
        var key: String?
    }

    func run() async throws {
        let present = try store.openIfPresent()
        let (set, graph) = try templates.load(store: present)
        let store = try present ?? self.store.open()
        let planner = Planner(store: store, secrets: set.sensitiveValues)
        let decisions = try await planner.plan(graph, force: force)
        let entries = try zip(graph.order, decisions).map { template, decision -> Entry in
            var from: String
            switch template.source {
            case .image(let family):
                if graph.template(family) != nil {
                    from = "image \(family) (this graph)"
                } else {
                    from = "image \(try store.catalog.buildParent(of: family)?.name ?? family) (from the catalog)"
                }
            case .debootstrap(let spec):
                from = "debootstrap \(spec.suite) (\(spec.variant), mirror \(spec.mirror ?? DebianMirror.host() ?? "unset"))"
                if !spec.include.isEmpty { from += " + \(spec.include.joined(separator: ","))" }
            case .file(let path, _): from = "file \(path)"
            case .url(let url, _): from = "url \(url)"
            case .providerImage(let id): from = "provider image \(id)"
            }
            return Entry(
                family: template.family, file: template.file, from: from, parent: template.parentFamily,
                steps: template.steps.map { step in
                    // Said here so a template made for several providers reads right in the plan.
                    let skipped = template.skipReason(of: step, provider: planner.provider ?? template.provider.name)
                    return set.redact(step.title + (skipped.map { " (skipped: \($0))" } ?? ""))
                },
                tests: template.tests.steps.map { step in
                    let skipped = template.skipReason(of: step, provider: planner.provider ?? template.provider.name)
                    return set.redact(step.title + (skipped.map { " (skipped: \($0))" } ?? ""))
                }, action: decision.action.rawValue,
                image: decision.image?.name, reasons: decision.reasons, key: decision.key)
        }
        if json {
            try printJSON(entries)
            return
        }
        let toBuild = entries.filter { $0.action == "build" }.count
        let toTest = entries.filter { $0.action == "test" }.count
        let testing = toTest == 0 ? "" : ", \(toTest) to test without a rebuild (one test boot each, no build VM)"
        print("build order (\(entries.count) image\(entries.count == 1 ? "" : "s"), \(toBuild) to build\(testing)):")
        for (index, entry) in entries.enumerated() {
            print("  \(index + 1). \(entry.family): \(entry.action)\(entry.image.map { " (\($0))" } ?? "")")
            print("     from   \(entry.from)")
            for reason in entry.reasons { print("     why    \(reason)") }
            print("     steps  \(entry.steps.count)")
            for step in entry.steps { print("            \(step)") }
            if !entry.tests.isEmpty {
                print("     tests  \(entry.tests.count) (on a test boot of the sealed image)")
                for step in entry.tests { print("            \(step)") }
            }
        }
    }
}
