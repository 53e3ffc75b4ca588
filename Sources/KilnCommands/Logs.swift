import ArgumentParser
import Foundation
import KilnCore
import KilnModel
import KilnStore

struct Logs: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the archived build log of an image or of a build.",
        discussion: """
            NAME is an image name, a family (its newest READY image) or a build id (failed builds \
            have no image: find their ids with --failed). The serial console is part of the log.
            """)

    @Argument(help: ArgumentHelp("An image name, family or build id.", valueName: "name"), completion: Completions.imageNames)
    var name: String?

    @Flag(help: "List failed and cancelled builds, newest last.")
    var failed = false

    @Flag(help: "Print the log of the image's newest test run (its test boot and test steps) instead of its build log.")
    var tests = false

    @OptionGroup var store: StoreOptions

    func run() async throws {
        let store = try store.open()
        if failed {
            let builds = try store.catalog.builds().filter { $0.status == .failed || $0.status == .cancelled }
            printTable(
                ["BUILD", "FAMILY", "STATUS", "STEP", "STARTED"],
                builds.map {
                    [$0.id, $0.family, $0.status.rawValue, $0.failedStep ?? "-", $0.started.formatted(.iso8601)]
                })
            return
        }
        guard let name else { throw KilnError(.invalidInput, "give an image name or build id, or --failed") }
        if tests {
            let image = try store.catalog.resolve(name)
            guard let run = try store.catalog.latestTestRun(of: image.name) else {
                throw KilnError(.notFound, "\(image.name) has no test runs (its template has no test: section, or it was built before one)")
            }
            guard let log = run.log, let data = try LogArchive.read(store.absolute(log), entry: "tests.log") else {
                throw KilnError(.notFound, "test run \(run.id) of \(image.name) has no archived log (status \(run.status.rawValue))")
            }
            try? FileHandle.standardOutput.write(contentsOf: data)
            return
        }
        let archive: String
        if let build = try store.catalog.build(id: name) {
            guard let log = build.log else {
                throw KilnError(.notFound, "build \(name) has no archived log yet (status \(build.status.rawValue))")
            }
            archive = log
        } else {
            archive = try store.catalog.resolve(name).log
        }
        // A run of tests on their own has only its tests' log.
        guard
            let data = try LogArchive.read(store.absolute(archive), entry: "build.log")
                ?? LogArchive.read(store.absolute(archive), entry: "tests.log")
        else {
            throw KilnError(.storeInconsistent, "\(store.absolute(archive)) has no build.log")
        }
        try? FileHandle.standardOutput.write(contentsOf: data)
    }
}
