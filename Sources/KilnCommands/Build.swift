import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnProviders
import KilnStore

struct Build: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Build the images of a template directory, parents first.",
        discussion: """
            Each image boots a provisioning VM on its parent's disk (or on a disk made from its \
            source), runs the provision steps, stops the VM and becomes an immutable image named \
            FAMILY-vYYYYMMDD-N. A layer is built from the newest READY image of its parent family.

            On failure the step is named, the VM is torn down, its disk removed (keep it with \
            --on-error=keep) and the log archived: see kiln logs --failed. Ctrl-C cleans up the \
            same way and exits with status 130.

            Every image records the commit of the template directory and the CI job that built \
            it (GitLab CI, GitHub Actions, Jenkins variables; else git): see kiln inspect. \
            --json prints the build as a stream of JSON events, one per line (docs/json.md).

            A breakpoint: step (or every step, with --debug) pauses the build with its VM up \
            and prints the ssh command that logs into it; Enter continues. Without a terminal \
            a breakpoint is skipped with a log line, or fails the build with --on-breakpoint=fail.
            """)

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Option(
        name: .customLong("on-error"),
        help: ArgumentHelp("cleanup: remove the failed VM's disk; keep: leave it to boot and inspect.", valueName: "cleanup|keep"),
        completion: .list(["cleanup", "keep"]))
    var onError: String = "cleanup"

    @Option(help: ArgumentHelp("Seconds to wait for the guest's SSH.", valueName: "seconds"))
    var bootTimeout: Int = 600

    @Option(
        help: ArgumentHelp(
            "Seconds one provisioning step may run; a step still running is stopped and the build fails.", valueName: "seconds"))
    var stepTimeout: Int = 7200

    @Option(
        help: ArgumentHelp(
            "Seconds the guest has to seal its disk, and QEMU to exit; then QEMU is killed and the build fails.", valueName: "seconds"))
    var shutdownTimeout: Int = 120

    @Flag(
        help: ArgumentHelp(
            "Boot every build VM from scratch: neither resume a warm snapshot of a VM booted on the same parent nor save one (docs/building.md)."
        ))
    var noWarm = false

    @Option(
        name: .short,
        help: ArgumentHelp("Build up to N independent images at once (default: what the machine holds: cores, memory).", valueName: "N"))
    var jobs: Int?

    @Flag(help: "Rebuild every selected image, even when a READY image was built from the same inputs.")
    var force = false

    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp("Build only these families; the others (their ancestors) are taken from the catalog.", valueName: "family"),
        completion: Completions.families)
    var only: [String] = []

    @Option(
        parsing: .upToNextOption,
        help: ArgumentHelp("Build every family but these; they are taken from the catalog.", valueName: "family"),
        completion: Completions.families)
    var except: [String] = []

    @Option(
        help: ArgumentHelp(
            "Point this channel of each built (or up-to-date) image's family at it, e.g. dev for a per-commit build.",
            valueName: "channel"))
    var promote: String?

    @Flag(help: "Print the build as JSON events, one per line, on standard output (docs/json.md).")
    var json = false

    @Option(
        help: ArgumentHelp(
            "Write the build's stages and test steps as JUnit XML to this file, whether the build passes or fails (GitLab's artifacts:reports:junit).",
            valueName: "file"))
    var junit: String?

    @Flag(
        help: ArgumentHelp(
            "Pause before every step with the VM up, print how to log into it, and wait for Enter (needs a terminal)."))
    var debug = false

    @Option(
        name: .customLong("on-breakpoint"),
        help: ArgumentHelp(
            "At a breakpoint: step, pause: wait for Enter when kiln runs in a terminal (else skip it with a log line); skip: never pause; fail: fail the build.",
            valueName: "pause|skip|fail"))
    var onBreakpoint: String = "pause"

    func run() async throws {
        guard let onErrorMode = BuildOptions.OnError(rawValue: onError) else {
            throw KilnError(.invalidInput, "--on-error must be cleanup or keep, got '\(onError)'")
        }
        guard let breakpointMode = BuildOptions.OnBreakpoint(rawValue: onBreakpoint) else {
            throw KilnError(.invalidInput, "--on-breakpoint must be pause, skip or fail, got '\(onBreakpoint)'")
        }
        let interactive = TerminalPrompt.isAvailable && !json
        if debug && !interactive {
            throw KilnError(
                .invalidInput,
                "--debug waits for Enter before every step: it needs a terminal on standard input and standard error, and no --json")
        }
        if let jobs, jobs < 1 { throw KilnError(.invalidInput, "-j must be at least 1") }
        if let promote { try Catalog.checkChannelName(promote) }
        guard bootTimeout > 0, stepTimeout > 0, shutdownTimeout > 0 else {
            throw KilnError(.invalidInput, "--boot-timeout, --step-timeout and --shutdown-timeout must be positive")
        }
        // Invalid templates and flags stop here, before anything is written to the store.
        let (set, graph) = try templates.load(store: try store.openIfPresent())
        let families = Set(graph.order.map(\.family))
        for name in only + except where !families.contains(name) {
            throw KilnError(
                .invalidInput, "no template of \(templates.path) builds '\(name)' (families: \(families.sorted().joined(separator: ", ")))")
        }
        var selected: Set<String>? = only.isEmpty ? nil : Set(only)
        if !except.isEmpty { selected = (selected ?? families).subtracting(except) }
        let parallel = jobs ?? Builder.defaultJobs(for: graph.order)
        let store = try store.openRecovered()
        var options = BuildOptions()
        options.onError = onErrorMode
        options.bootTimeout = .seconds(bootTimeout)
        options.stepTimeout = .seconds(stepTimeout)
        options.shutdownTimeout = .seconds(shutdownTimeout)
        options.warm = !noWarm
        options.origin = OriginSource(templates: templates.path)
        options.onBreakpoint = breakpointMode
        options.debug = debug
        options.prompt = interactive ? TerminalPrompt() : nil
        options.signingKey = try store.defaultSigningKeyPath().map(SigningKey.load)
        options.remote = try self.store.remote(for: store)
        let live: any BuildReporter = json ? JSONLinesReporter() : ConsoleReporter()
        let report = junit.map { _ in JUnitReport(forwardingTo: live) }
        let reporter: any BuildReporter = report ?? live
        let builder = Builder(store: store, options: options, reporter: reporter)
        let results: [BuildResult]
        do {
            results = try await builder.build(graph, secrets: set.sensitiveValues, force: force, selected: selected, jobs: parallel)
            if let junit, let report { try report.write(to: junit) }
        } catch {
            // Written for a failed build too: that is when CI shows it.
            if let junit, let report {
                do { try report.write(to: junit) } catch { printError("kiln: warning: \(error)") }
            }
            throw error
        }
        // The cache stays bounded without anyone remembering to prune it. The images are built
        // by now: a failed prune is reported, not turned into a failed build.
        do {
            for entry in try await SourceCache.prune(store, limit: SourceCache.defaultLimit(), remote: options.remote) {
                printError("kiln: cache: removed \(entry.kind.rawValue) \(entry.description) (\(ByteCount.human(Int64(entry.bytes))))")
            }
        } catch {
            printError("kiln: warning: could not prune the source cache: \(error)")
        }
        if let promote {
            for result in results where try store.catalog.channel(promote, of: result.image.family)?.image != result.image.name {
                try store.catalog.promote(result.image.name, channel: promote)
                var event = BuildEvent(.promoted, family: result.image.family)
                event.image = result.image.name
                event.channel = promote
                reporter.report(event)
            }
        }
        if json { return }
        for result in results {
            let image = result.image
            let on = image.parent.map { " (on \($0))" } ?? ""
            switch result {
            case .built: print("built \(image.name)\(on)")
            case .upToDate: print("up to date: \(image.name)\(on)")
            case .tested: print("tested \(image.name)\(on): its tests passed, no rebuild")
            }
        }
    }
}
