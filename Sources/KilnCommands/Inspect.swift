import ArgumentParser
import Foundation
import KilnCore
import KilnExport
import KilnModel
import KilnStore

struct Inspect: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show everything the catalog knows about one image.",
        discussion: "NAME is an exact image name (family-vYYYYMMDD-N), FAMILY@CHANNEL, or a family (its newest READY image).")

    @Argument(help: ArgumentHelp("An image name or a family.", valueName: "name"), completion: Completions.imageNames)
    var name: String

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON.")
    var json = false

    @Flag(help: "Print the image's installed packages (name, version, architecture, source, source version), recorded at its build.")
    var packages = false

    @Flag(help: "Print the image's provenance record (docs/provenance.md), as its build wrote it.")
    var provenance = false

    @Flag(help: "Print the image's packages as an SPDX 2.3 JSON document (its SBOM).")
    var spdx = false

    func validate() throws {
        if [packages, provenance, spdx].filter({ $0 }).count > 1 {
            throw ValidationError("--packages, --provenance and --spdx each print one document; give one")
        }
    }

    func run() async throws {
        let store = try store.open()
        let image = try store.catalog.resolve(name)
        if provenance || spdx {
            // An image built before kiln kept provenance gets its record now, from the catalog.
            let data = try store.recordProvenance(of: image, provider: nil)
            let output = provenance ? data : try SPDX.document(try Provenance.decode(data, path: store.provenancePath(of: image.name)))
            try? FileHandle.standardOutput.write(contentsOf: output)
            if spdx { print() }
            return
        }
        if packages {
            guard let manifest = try store.catalog.packages(of: image.name) else {
                throw KilnError(
                    .notFound, "\(image.name) has no package manifest (no dpkg in the guest, or built before kiln recorded them)")
            }
            if json {
                try printJSON(manifest.packages)
            } else {
                print(manifest.tsv, terminator: "")
            }
            return
        }
        let view = ImageView(image, store: store, testRun: try store.catalog.latestTestRun(of: image.name))
        if json {
            try printJSON(view)
            return
        }
        let rows: [(String, String?)] = [
            ("name", view.name), ("family", view.family), ("version", view.version), ("state", view.state),
            ("parent", view.parent ?? "-"), ("replacement", view.replacement), ("obsolete on", view.obsoleteOn),
            ("delete on", view.deleteOn), ("purge on", view.purgeOn), ("purged", view.purged ? "yes" : nil),
            ("digest", "sha256:" + view.digest), ("disk", view.disk), ("provider", view.provider),
            ("artifact", view.artifact?.summary),
            ("size", ByteCount.human(view.size)), ("created", view.created), ("source", view.source),
            ("description", view.description), ("template", "sha256:" + view.templateHash),
            ("build", view.buildID), ("origin", view.origin?.summary), ("job url", view.origin?.jobURL), ("log", view.log),
            ("build key", view.buildKey.map { "sha256:" + $0 } ?? "-"),
            ("tests", view.tests.map { "\($0.summary) (kiln logs \(view.name) --tests)" }),
            ("packages", try store.catalog.packages(of: image.name).map { "\($0.packages.count) (kiln inspect --packages)" }),
            ("labels", view.labels.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ")),
        ]
        for case let (key, value?) in rows { print("\(key.padding(toLength: 12, withPad: " ", startingAt: 0))\(value)") }
    }
}
