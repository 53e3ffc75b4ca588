import ArgumentParser
import KilnModel
import KilnStore

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the images in the store.",
        discussion: """
            Columns: NAME FAMILY VERSION STATE PARENT SIZE CREATED TESTS. SIZE is what the image's own \
            disk layer occupies; TESTS is its newest test run (passed, failed, or - when it has none).
            """)

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print a JSON list of objects (the same fields as inspect --json).")
    var json = false

    @Option(help: ArgumentHelp("Only images of this family.", valueName: "family"))
    var family: String?

    func run() async throws {
        let store = try store.open()
        let images = try store.catalog.images().filter { family == nil || $0.family == family }
        let runs = try store.catalog.latestTestRuns()
        if json {
            try printJSON(images.map { ImageView($0, store: store, testRun: runs[$0.name]) })
            return
        }
        printTable(
            ["NAME", "FAMILY", "VERSION", "STATE", "PARENT", "SIZE", "CREATED", "TESTS"],
            images.map {
                [
                    $0.name, $0.family, $0.version, $0.state.rawValue + ($0.purged ? " (purged)" : ""), $0.parent ?? "-",
                    humanSize($0.size),
                    $0.created.formatted(.iso8601), runs[$0.name]?.status.rawValue ?? "-",
                ]
            })
    }
}
