import ArgumentParser
import KilnBuild
import KilnCore
import KilnModel

struct CacheList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "list", abstract: "List what the cache holds (source disks, downloads; with a remote, image blobs).")

    @OptionGroup var store: StoreOptions

    @Flag(help: "Print JSON.")
    var json = false

    func run() async throws {
        let opened = try store.open()
        // With a remote, the image blobs are fetched again on demand: cache entries too.
        let entries = try SourceCache.entries(in: opened, remote: try store.remote(for: opened) != nil)
        if json {
            try printJSON(entries)
            return
        }
        printTable(
            ["KIND", "SIZE", "LAST USED", "IN USE", "WHAT"],
            entries.map {
                [
                    $0.kind.rawValue, ByteCount.human(Int64($0.bytes)), $0.lastUsed.formatted(.iso8601), $0.inUse ? "yes" : "no",
                    $0.description,
                ]
            })
        let total = entries.reduce(0) { $0 + $1.bytes }
        print("total \(ByteCount.human(Int64(total))) (limit \(ByteCount.human(Int64(SourceCache.defaultLimit()))))")
    }
}
