import ArgumentParser
import KilnBuild
import KilnCore
import KilnModel

struct CachePrune: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "prune",
        abstract: "Remove unused cache entries, least recently used first, down to a size.")

    @OptionGroup var store: StoreOptions

    @Option(
        name: .customLong("max-size"),
        help: ArgumentHelp("Keep at most this much (e.g. 10G; 0 removes every unused entry).", valueName: "size"))
    var maxSize: String?

    @Flag(name: .customLong("dry-run"), help: "Print what would be removed, remove nothing.")
    var dryRun = false

    func run() async throws {
        let limit: UInt64
        if let maxSize {
            guard let parsed = SourceCache.parseSize(maxSize) else {
                throw KilnError(.invalidInput, "--max-size \(maxSize): expected a size like 10G, 512M or 0")
            }
            limit = parsed
        } else {
            limit = SourceCache.defaultLimit()
        }
        let opened = try store.open()
        let removed = try await SourceCache.prune(opened, limit: limit, dryRun: dryRun, remote: try store.remote(for: opened))
        for entry in removed {
            print(
                "\(dryRun ? "would remove" : "removed") \(entry.kind.rawValue) \(entry.description) (\(ByteCount.human(Int64(entry.bytes))))"
            )
        }
        if removed.isEmpty { print("nothing to remove") }
    }
}
