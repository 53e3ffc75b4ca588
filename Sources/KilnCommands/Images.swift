import ArgumentParser
import KilnCore
import KilnModel
import KilnStore

struct Images: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List the images in the store.",
        discussion: """
            Columns: NAME FAMILY VERSION STATE PARENT SIZE CREATED TESTS. SIZE is what the image's own \
            disk layer occupies; TESTS is its newest test run (passed, failed, or - when it has none). \
            DELETED images are hidden unless --show-deleted (or --all) is given.

            --filter takes terms that must all hold, separated by spaces: FIELD=VALUE, FIELD!=VALUE, \
            FIELD~REGEX, FIELD!~REGEX, on name, family, version, state, parent, tests and \
            labels.KEY. Examples:
              kiln images --filter 'state=READY labels.team=web'
              kiln images --filter 'family~^debian-12' --sort-by ~created --limit 5
            """)

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print a JSON list of objects (the same fields as inspect --json).")
    var json = false

    @Option(
        help: ArgumentHelp("Only images of this family (the same as --filter family=FAMILY).", valueName: "family"),
        completion: Completions.families)
    var family: String?

    @Flag(help: "Also list DELETED images.")
    var showDeleted = false

    @Flag(help: "List every image, DELETED ones included (the same as --show-deleted).")
    var all = false

    @Option(help: ArgumentHelp("Only images where every term holds (repeatable; see above).", valueName: "expression"))
    var filter: [String] = []

    @Option(
        help: ArgumentHelp(
            "Order by name, family, version, state, parent, created or size; ~FIELD for descending; commas for more keys.",
            valueName: "field"))
    var sortBy: String?

    @Option(help: ArgumentHelp("Print at most this many images (after filtering and sorting).", valueName: "n"))
    var limit: Int?

    func validate() throws {
        if let limit, limit < 1 { throw ValidationError("--limit must be at least 1") }
    }

    func run() async throws {
        let query = try ImageQuery(filters: filter + (family.map { ["family=\($0)"] } ?? []))
        let sorter = try sortBy.map(ImageQuery.sorter)
        let store = try store.open()
        let runs = try store.catalog.latestTestRuns()
        var images = try store.catalog.images().filter {
            (all || showDeleted || $0.state != .deleted) && query.matches($0, testStatus: runs[$0.name]?.status.rawValue)
        }
        if let sorter { images.sort(by: sorter) }
        if let limit { images = Array(images.prefix(limit)) }
        if json {
            try printJSON(images.map { ImageView($0, store: store, testRun: runs[$0.name]) })
            return
        }
        printTable(
            ["NAME", "FAMILY", "VERSION", "STATE", "PARENT", "SIZE", "CREATED", "TESTS"],
            images.map {
                [
                    $0.name, $0.family, $0.version, $0.state.rawValue + ($0.purged ? " (purged)" : ""), $0.parent ?? "-",
                    ByteCount.human($0.size),
                    $0.created.formatted(.iso8601), runs[$0.name]?.status.rawValue ?? "-",
                ]
            })
    }
}
