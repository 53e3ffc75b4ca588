import ArgumentParser
import KilnBuild
import KilnCore
import KilnStore

struct Verify: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Re-hash image blobs and check the catalog against the store.",
        discussion: """
            With NAME, checks that image and every blob its disk stands on; without, every image \
            whose disk the catalog says exists, every cached source disk, and what the store holds \
            that no catalog row names. A blob must exist, hash to its name, be read-only and be \
            backed by the blob the catalog names; an image's parent must be in the catalog and be \
            that blob. Exits 1 when anything is wrong.

              kiln verify                       the whole store
              kiln verify web-v20261123-2       one image and what it stands on
            """)

    @Argument(help: ArgumentHelp("An exact image name; default: the whole store.", valueName: "name"))
    var name: String?

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON: {results: [{subject, digest, problems}], notes}.")
    var json = false

    func run() async throws {
        let store = try store.openRecovered()
        let report = try await Verifier.run(store, name: name)
        if json {
            try printJSON(report)
        } else {
            for result in report.results {
                if result.problems.isEmpty {
                    print("ok      \(result.subject)  sha256:\(result.digest.prefix(12))")
                } else {
                    for problem in result.problems { print("FAILED  \(result.subject): \(problem)") }
                }
            }
            for note in report.notes { print("note    \(note)") }
            let count = report.problemCount
            print("verified \(report.results.count) blob(s): \(count == 0 ? "no problems" : "\(count) problem(s)")")
        }
        if report.problemCount > 0 {
            throw KilnError(.storeInconsistent, "the store has \(report.problemCount) problem(s); see above")
        }
    }
}
