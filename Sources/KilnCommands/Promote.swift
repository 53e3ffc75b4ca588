import ArgumentParser
import KilnModel
import KilnStore

struct Promote: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Point a channel (dev, prod, ...) of the image's family at an exact image.",
        discussion: """
            Channels let the same image go from dev to prod: resolve FAMILY@CHANNEL gives the \
            image the channel points at. Every move is kept in the family's history (kiln family \
            show), and an image a channel points at is never obsoleted or deleted.

            NAME is an exact image, FAMILY@CHANNEL (the image that channel points at: \
            `kiln promote shop-web@dev --channel prod` moves prod to the very image dev runs) \
            or a family (its newest READY image).
            """)

    @Argument(help: ArgumentHelp("An image name, FAMILY@CHANNEL or a family.", valueName: "name"), completion: Completions.imageNames)
    var name: String
    @Option(help: ArgumentHelp("The channel.", valueName: "channel")) var channel: String
    @Flag(name: .customLong("dry-run"), help: "Check the move and print it; move nothing.") var dryRun = false
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let catalog = try store.open().catalog
        let assignment = try catalog.promote(try catalog.resolve(name).name, channel: channel, dryRun: dryRun)
        print("\(dryRun ? "would move " : "")\(assignment.family)@\(assignment.name) -> \(assignment.image)")
    }
}
