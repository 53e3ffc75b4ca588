import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

struct Test: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Run an image's tests again: boot it as a deployment would and run its template's test: steps.",
        discussion: """
            NAME is an exact image name, or a family: its newest image that is READY, TESTING or \
            FAILED (the one its last build made). The steps are the test: section of the family's \
            template in DIR (default: the current directory), as it is now; nothing is rebuilt. The \
            image boots on a throw-away disk: nothing a test writes reaches it.

            Passing makes a TESTING or FAILED image READY; failing makes a READY or TESTING image \
            FAILED, so its family resolves to its previous READY image. The exit status is 1 when a \
            test fails. See docs/testing.md.
            """)

    @Argument(help: ArgumentHelp("An image name or a family.", valueName: "name"), completion: Completions.imageNames)
    var name: String

    @Argument(help: ArgumentHelp("The directory of templates (or one template file) that has the family's tests.", valueName: "dir"))
    var path: String = "."

    @Option(
        name: .customLong("var"),
        help: ArgumentHelp("Set a template variable (repeatable; wins over KILN_VAR_NAME and defaults).", valueName: "name=value"))
    var variables: [String] = []

    @OptionGroup var store: StoreOptions

    @Option(help: ArgumentHelp("Seconds to wait for the test boot's SSH.", valueName: "seconds"))
    var bootTimeout: Int = 600

    @Option(help: ArgumentHelp("Seconds one test step may run (a step's own timeout: wins).", valueName: "seconds"))
    var stepTimeout: Int = 7200

    @Flag(help: "Print the run as JSON events, one per line, on standard output (docs/json.md).")
    var json = false

    func run() async throws {
        guard bootTimeout > 0, stepTimeout > 0 else { throw KilnError(.invalidInput, "--boot-timeout and --step-timeout must be positive") }
        let templates = try TemplateOptions.parse([path] + variables.flatMap { ["--var", $0] })
        let (set, graph) = try templates.load(store: try store.openIfPresent())
        let store = try store.openRecovered()
        let chosen = try Self.image(named: name, in: store.catalog)
        // A build of the family waits for this run, and this run for a build; the image is read
        // again under the lock (a build may have made a newer one, or moved this one).
        let lock = try await store.lockFamily(chosen.family) {
            printError("kiln: waiting for another kiln process that is building \(chosen.family)")
        }
        defer { withExtendedLifetime(lock) {} }
        let image = try Self.image(named: name, in: store.catalog)
        guard let template = graph.template(image.family) else {
            throw KilnError(
                .invalidInput,
                "no template in \(path) builds \(image.family): give the directory with its template (kiln test \(name) DIR)")
        }
        guard !image.purged, image.state != .deleted else {
            throw KilnError(.invalidInput, "\(image.name) is \(image.state.rawValue): its disk is gone or going, nothing to test")
        }
        let provider = try Providers.named(template.provider.name, pluginDirectory: store.pluginDirectory)
        guard provider.bootsImagesForTests else {
            throw KilnError(.invalidInput, "the \(provider.name) provider cannot boot an image for tests (qemu can; docs/testing.md)")
        }
        if template.testSteps(for: provider.name).isEmpty {
            // A run with nothing in it would pass, and make a FAILED image READY: a template in
            // the wrong directory must not do that.
            throw KilnError(
                .invalidInput,
                "\(template.family)'s template in \(path) has no test steps for \(provider.name): nothing to run (docs/testing.md)")
        }
        var options = BuildOptions()
        options.bootTimeout = .seconds(bootTimeout)
        options.stepTimeout = .seconds(stepTimeout)
        options.signingKey = try store.defaultSigningKeyPath().map(SigningKey.load)
        options.remote = try self.store.remote(for: store)
        let reporter: any BuildReporter = json ? JSONLinesReporter() : ConsoleReporter()
        let builder = Builder(store: store, options: options, reporter: reporter)
        let testsHash = try BuildKeys.testsHash(
            for: template, secrets: set.sensitiveValues, provider: provider.name, conceal: try store.catalog.concealer())
        let tested = try await builder.test(
            image, template: template, provider: provider, testsHash: testsHash, secrets: set.sensitiveValues)
        if !json { print("tests passed: \(tested.name) is \(tested.state.rawValue)") }
    }

    /// An exact name, or the family's newest image that tests decide about.
    static func image(named name: String, in catalog: Catalog) throws -> ImageRecord {
        if let exact = try catalog.image(named: name) { return exact }
        let candidates = try catalog.images().filter { $0.family == name && [.ready, .testing, .failed].contains($0.state) }
        if let newest = candidates.max(by: { ($0.created, $0.version) < ($1.created, $1.version) }) { return newest }
        throw KilnError(.notFound, "no image or family named '\(name)' with a READY, TESTING or FAILED image (see kiln images)")
    }
}
