import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnGraph
import KilnModel
import KilnRemote
import KilnStore
import KilnTemplates

/// `kiln`: the root command. Subcommands are one file each in this module.
public struct Kiln: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "kiln",
        abstract: "Build immutable, versioned VM images from YAML templates.",
        discussion: """
            A directory of templates is one image graph (base -> application -> product). \
            kiln builds each image in a provisioning VM, snapshots its disk into a versioned, \
            immutable image in the store ($KILN_HOME, default ~/.local/share/kiln) and archives \
            the build log.

              kiln validate examples/debian   check templates, print every error
              kiln plan examples/debian       show the build order
              kiln build examples/debian      build base -> app -> product
              kiln images                     list images
              kiln inspect NAME --json        all the catalog knows of an image
              kiln logs NAME                  the archived build log

            Exit status: 0 ok, 1 build failed, 2 invalid input, 130 interrupted. \
            Documentation: docs/ in kiln's source tree.
            """,
        version: KilnVersion.current,
        subcommands: [
            Validate.self, Plan.self, Build.self, Images.self, Inspect.self, Logs.self, Resolve.self, Deprecate.self,
            Undeprecate.self, Obsolete.self, Delete.self, Rollback.self, Promote.self, Family.self, Rotate.self, GC.self, Cache.self,
            Verify.self, CI.self, Refresh.self, Export.self, Keys.self, Sign.self, Test.self, Import.self, Push.self, Pull.self, Serve.self,
        ]
    )

    public init() {}

    /// Runs the command line with Ctrl-C and SIGTERM turned into task cancellation, so a
    /// build tears its VM down and archives its log before kiln exits.
    public static func runMain() async -> Never {
        // A parent may have started kiln with signals blocked (Foundation's Process does);
        // Ctrl-C and SIGTERM must reach the handlers below or a build could not be stopped.
        var none = sigset_t()
        sigemptyset(&none)
        pthread_sigmask(SIG_SETMASK, &none, nil)
        signal(SIGINT, SIG_IGN)
        signal(SIGTERM, SIG_IGN)
        // A closed standard output (`kiln build --json | head -5`) must not kill a build mid-way
        // through SIGPIPE: writes fail with EPIPE instead, and output is dropped.
        signal(SIGPIPE, SIG_IGN)
        // Long work (bootstrap, downloads, exports, pushes) shows a bar on a terminal and a line
        // every 10 s in CI logs (docs/cli.md).
        ProgressMeter.style.withLock { $0 = .forStandardError() }
        if let problem = SingleDashWords.problem(in: Array(CommandLine.arguments.dropFirst())) {
            printError("kiln: error: \(problem)")
            Foundation.exit(2)
        }
        let task = Task { () -> Int32 in
            do {
                var command = try parseAsRoot()
                if var asyncCommand = command as? any AsyncParsableCommand {
                    try await asyncCommand.run()
                } else {
                    try command.run()
                }
                return 0
            } catch {
                return report(error)
            }
        }
        let sources = [SIGINT, SIGTERM].map { signalNumber in
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler {
                try? FileHandle.standardError.write(contentsOf: Data("\nkiln: interrupted, cleaning up...\n".utf8))
                task.cancel()
            }
            source.resume()
            return source
        }
        let status = await task.value
        sources.forEach { $0.cancel() }
        Foundation.exit(status)
    }

    static func report(_ error: any Error) -> Int32 {
        switch error {
        case let failure as ValidationFailure:
            printError(failure.description)
            printError("kiln: \(failure.diagnostics.count) error\(failure.diagnostics.count == 1 ? "" : "s"); nothing was built")
            return 2
        case let error as KilnError:
            // A positioned error is already `file:line:col: error: ...`, as the loader prints them.
            printError(error.location == nil ? "kiln: error: \(error.description)" : error.description)
            return error.exitStatus
        case is CancellationError:
            printError("kiln: interrupted")
            return 130
        default:
            // ArgumentParser's own errors (usage, --help) know their exit code and text.
            let code = Kiln.exitCode(for: error)
            let message = Kiln.fullMessage(for: error)
            if !message.isEmpty {
                if code == .success { print(message) } else { printError(message) }
            }
            return code == .validationFailure ? 2 : code.rawValue
        }
    }
}

func printError(_ text: String) {
    // Messages quote templates and guests: on a terminal, their control characters are shown, not obeyed.
    let shown =
        isatty(STDERR_FILENO) == 1
        ? text.split(separator: "\n", omittingEmptySubsequences: false).map { TerminalText.sanitize(String($0)) }.joined(separator: "\n")
        : text
    try? FileHandle.standardError.write(contentsOf: Data((shown + "\n").utf8))
}

/// Options every command shares.
struct StoreOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("The store directory.", valueName: "dir"), completion: .directory)
    var home: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "The catalog: postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE to share it between machines (default $KILN_CATALOG, else the store's SQLite file).",
            valueName: "url"))
    var catalog: String?

    @Option(
        name: .long,
        help: ArgumentHelp(
            "Where blobs are shared between machines: oci://HOST[:PORT]/REPOSITORY, or none (default $KILN_REMOTE; in a GitLab job, $CI_REGISTRY_IMAGE/kiln).",
            valueName: "url"))
    var remote: String?

    var root: String { home ?? Store.defaultRoot() }

    /// The remote of ``RemoteLocation/resolve(flag:environment:)`` on `store`; nil when none is set.
    func remote(for store: Store) throws -> Remote? {
        try RemoteLocation.resolve(flag: remote).map { Remote(location: $0, store: store) }
    }

    var catalogLocator: String? { catalog ?? ProcessInfo.processInfo.environment["KILN_CATALOG"] }

    func open() throws -> Store { try Store(root: root, catalog: catalogLocator) }

    /// The store, after cleaning up what kiln processes that died mid-build left (``Recovery``).
    func openRecovered() throws -> Store {
        let store = try open()
        let report = try Recovery.run(store)
        for reaped in report.reaped where !reaped.killed.isEmpty {
            printError(
                "kiln: killed \(reaped.killed.count) process(es) left running by kiln pid \(reaped.owner), which died: \(reaped.killed.map(String.init).joined(separator: " "))"
            )
        }
        for build in report.interrupted {
            printError("kiln: build \(build.id) of \(build.family) was interrupted at \(build.failedStep ?? "?"); recorded as failed")
        }
        return store
    }

    /// The store if one exists: commands that only read templates never create one.
    func openIfPresent() throws -> Store? {
        let shared = !(catalogLocator ?? "").isEmpty
        return shared || FileManager.default.fileExists(atPath: root + "/catalog.sqlite") ? try open() : nil
    }
}

/// Template directory and variable values, for commands that read templates.
struct TemplateOptions: ParsableArguments {
    @Argument(
        help: ArgumentHelp("A directory of templates (one graph) or one template file.", valueName: "dir"),
        completion: Completions.templates)
    var path: String

    @Option(
        name: .customLong("var"),
        help: ArgumentHelp("Set a template variable (repeatable; wins over KILN_VAR_NAME and defaults).", valueName: "name=value"))
    var variables: [String] = []

    @Option(
        name: .customLong("var-file"),
        help: ArgumentHelp(
            "Set template variables from a YAML or JSON file of name: value (repeatable; later files win, --var wins over them).",
            valueName: "file"), completion: .file(extensions: ["yaml", "yml", "json"]))
    var variableFiles: [String] = []

    /// Each variable given on the command line, with where it came from (for the error when no
    /// template declares it).
    func overrides() throws -> [String: (value: String, origin: String)] {
        var result: [String: (value: String, origin: String)] = [:]
        for file in variableFiles {
            for (name, value) in try VariableFile.read(file) { result[name] = (value, "--var-file \(file)") }
        }
        for item in variables {
            guard let equals = item.firstIndex(of: "="), equals != item.startIndex else {
                throw KilnError(.invalidInput, "--var \(item): expected NAME=VALUE")
            }
            let name = String(item[..<equals])
            result[name] = (String(item[item.index(after: equals)...]), "--var \(name)")
        }
        return result
    }

    func load(store: Store? = nil) throws -> (TemplateSet, ImageGraph) {
        let given = try overrides()
        let reading = try TemplateLoader(overrides: given.mapValues(\.value)).read(path: path)
        let known = try store?.catalog.families() ?? []
        if !reading.diagnostics.isEmpty {
            // Every problem in one run: the graph's too, among the templates that could be named.
            let graphProblems = ImageGraph.problems(
                of: reading.set.templates, knownFamilies: known, reportUnknownParents: reading.unnamedFiles.isEmpty)
            throw ValidationFailure(
                (reading.diagnostics + graphProblems).sorted { ($0.file, $0.line, $0.column) < ($1.file, $1.line, $1.column) })
        }
        let set = reading.set
        // A misspelt name would otherwise be ignored and the default used, silently (Packer
        // refuses it too).
        let declared = Set(set.templates.flatMap { $0.variables.map(\.name) })
        for (name, given) in given.sorted(by: { $0.key < $1.key }) where !declared.contains(name) {
            let hint = Suggestion.closest(to: name, in: declared.sorted()).map { " (did you mean '\($0)'?)" } ?? ""
            throw KilnError(.invalidInput, "\(given.origin): no template in \(path) declares a variable '\(name)'\(hint)")
        }
        return (set, try ImageGraph(set, knownFamilies: known))
    }
}
