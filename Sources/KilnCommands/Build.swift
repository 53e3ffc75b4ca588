import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
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
            """)

    @OptionGroup var templates: TemplateOptions
    @OptionGroup var store: StoreOptions

    @Option(
        name: .customLong("on-error"),
        help: ArgumentHelp("cleanup: remove the failed VM's disk; keep: leave it to boot and inspect.", valueName: "cleanup|keep"))
    var onError: String = "cleanup"

    @Option(help: ArgumentHelp("Seconds to wait for the guest's SSH.", valueName: "seconds"))
    var bootTimeout: Int = 600

    func run() async throws {
        guard let onErrorMode = BuildOptions.OnError(rawValue: onError) else {
            throw KilnError(.invalidInput, "--on-error must be cleanup or keep, got '\(onError)'")
        }
        // Invalid templates stop here, before anything is written to the store.
        let (set, graph) = try templates.load(store: try store.openIfPresent())
        let store = try store.open()
        var options = BuildOptions()
        options.onError = onErrorMode
        options.bootTimeout = .seconds(bootTimeout)
        let builder = Builder(
            store: store, provider: try Providers.named("qemu"), options: options, reporter: ConsoleReporter())
        let images = try await builder.build(graph, secrets: set.sensitiveValues)
        for image in images {
            print("built \(image.name)\(image.parent.map { " (on \($0))" } ?? "")")
        }
    }
}
