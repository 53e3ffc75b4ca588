import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

struct Refresh: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Rebuild the images whose packages have updates, then rotate their families.",
        discussion: """
            Compares the packages each image of the directory has installed (recorded at the end \
            of its build) with the newest versions in its base's repositories: the Release and \
            Packages files of the base's suites, updates and security suites included, signatures \
            and hashes verified. Nothing boots for the check.

            When an image has updates, its debootstrap base is rebuilt from the repositories' \
            current state, then every image built on it; then kiln rotate runs on their families. \
            Images with tests (docs/testing.md) are tested as they are built, and stay TESTING \
            until every image the refresh rebuilt has passed: then all become READY at once, \
            and only then does anything rotate. Old images stay READY until their replacements \
            are: a refresh that fails half way leaves every family resolving to a working image.

            With --check nothing is built: exit status 0 when every image is current, 10 when \
            some have updates (or are not built yet). Run it from cron, a systemd timer or a \
            scheduled CI pipeline (examples/refresh). See docs/refresh.md.
            """)

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Flag(help: "Only check: print what has updates, build nothing; exit status 10 when something would be rebuilt.")
    var check = false

    @Option(help: ArgumentHelp("Seconds to wait for the guest's SSH.", valueName: "seconds"))
    var bootTimeout: Int = 600

    @Option(
        name: .short,
        help: ArgumentHelp("Build up to N independent images at once (default: what the machine holds: cores, memory).", valueName: "N"))
    var jobs: Int?

    @Flag(name: .customLong("no-rotate"), help: "Do not rotate the rebuilt families afterwards.")
    var noRotate = false

    @Flag(help: "Boot every build VM from scratch, without warm snapshots (as kiln build --no-warm).")
    var noWarm = false

    /// `--check`'s status when something has updates: distinct from 1 (the check failed).
    static let updatesAvailable: Int32 = 10

    func run() async throws {
        if let jobs, jobs < 1 { throw KilnError(.invalidInput, "-j must be at least 1") }
        guard bootTimeout > 0 else { throw KilnError(.invalidInput, "--boot-timeout must be positive") }
        let (set, graph) = try templates.load(store: try store.openIfPresent())
        let store = try check ? store.open() : store.openRecovered()
        let started = ContinuousClock.now
        let report = try await RefreshChecker(store: store).check(graph)
        print("checked \(graph.order.count) image(s) in \((ContinuousClock.now - started).kilnDescription) against:")
        for suite in report.suites { print("  \(suite)") }
        let outdated = report.outdatedBases
        for finding in report.findings { print(Self.describe(finding, outdated: outdated)) }
        guard !outdated.isEmpty else {
            print("every image is current: nothing to rebuild")
            return
        }
        let rebuilt = report.findings.filter { $0.base.map(outdated.contains) ?? false }.map(\.family)
        if check {
            print("would rebuild: \(rebuilt.joined(separator: ", "))")
            throw ExitCode(Self.updatesAvailable)
        }
        var options = BuildOptions()
        options.bootTimeout = .seconds(bootTimeout)
        options.freshSources = outdated
        options.warm = !noWarm
        options.origin = OriginSource(templates: templates.path)
        // No family moves until every rebuilt image has passed its tests.
        options.holdReady = true
        options.remote = try self.store.remote(for: store)
        let passed = PassedTests(ConsoleReporter())
        let builder = Builder(store: store, options: options, reporter: passed)
        let parallel = jobs ?? Builder.defaultJobs(for: graph.order)
        let results: [BuildResult]
        do {
            results = try await builder.build(graph, secrets: set.sensitiveValues, selected: Set(rebuilt), jobs: parallel)
        } catch {
            let held = passed.images.value
            if !held.isEmpty {
                printError(
                    "kiln: refresh: held back \(held.joined(separator: ", ")): they passed their tests but stay TESTING, because the refresh failed; no family moved and nothing rotated"
                )
            }
            throw error
        }
        let ready = passed.images.value
        if !ready.isEmpty {
            try store.catalog.markReady(ready, reason: "refresh: every image it rebuilt passed its tests")
            // A provider's copy was tagged TESTING when its image was committed (an AMI's tags).
            await ProviderSync.changed(ready, in: store, warn: warnOnStderr)
            print("READY: \(ready.joined(separator: ", ")) (every rebuilt image passed its tests)")
        }
        var moved: [String] = []
        for result in results {
            switch result {
            case .built(let image):
                print("built \(image.name)\(image.parent.map { " (on \($0))" } ?? "")")
                moved.append(image.family)
            case .upToDate(let image):
                print("up to date: \(image.name) (its repositories' Release files have not changed since it was built)")
            case .tested(let image):
                print("tested \(image.name): its tests passed, no rebuild")
                moved.append(image.family)
            }
        }
        // Only once every rebuild is READY: a failure above leaves the old images as they were.
        guard !noRotate else { return }
        for family in moved {
            let (actions, _) = try store.catalog.rotate(family: family, now: Date(), dryRun: false)
            for action in actions { print("rotated \(action.image): \(action.from.rawValue) -> \(action.to.rawValue)") }
        }
    }

    static func describe(_ finding: RefreshFinding, outdated: Set<String>) -> String {
        let name = finding.family + (finding.image.map { " (\($0))" } ?? "")
        let onBase = finding.base.flatMap { $0 != finding.family && outdated.contains($0) ? $0 : nil }
        switch finding.status {
        case .updates(let updates):
            let shown = updates.prefix(20).map { "\($0.name) \($0.installed) -> \($0.available)" }
            let more = updates.count > shown.count ? ", and \(updates.count - shown.count) more" : ""
            return "\(name): \(updates.count) update(s): \(shown.joined(separator: ", "))\(more)"
        case .notBuilt:
            return "\(name): no READY image yet: it is built"
        case .current(let checked):
            if let onBase { return "\(name): current (\(checked) packages), rebuilt because its base \(onBase) is" }
            if outdated.contains(finding.family) {
                return "\(name): current (\(checked) packages), rebuilt: images built on it have updates"
            }
            return "\(name): current (\(checked) packages)"
        case .unchecked(let reason):
            if let onBase { return "\(name): not checked (\(reason)), rebuilt because its base \(onBase) is" }
            return "\(name): not checked: \(reason)"
        }
    }
}

/// Which images passed their tests during a refresh (held TESTING until all have).
final class PassedTests: BuildReporter {
    let next: any BuildReporter
    let images = Locked<[String]>([])

    init(_ next: any BuildReporter) { self.next = next }

    func report(_ event: BuildEvent) {
        next.report(event)
        if event.event == .testsPassed, let image = event.image { images.withLock { $0.append(image) } }
    }
}
