import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnModel

struct GC: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "gc",
        abstract: "Remove the disks of purged images, leftovers of dead builds, and bound the cache.",
        discussion: """
            A DELETED image's disk is removed once its purge date has passed and no image that is \
            not purged is built on it; its catalog row stays for the family's history. An image \
            whose tests failed (FAILED, docs/testing.md) is kept for inspection until gc, which \
            deletes and purges it, unless it was READY before; so is a TESTING image whose tests \
            never finished once a newer image of its family exists. With a remote (docs/remote.md), \
            a purged image's manifests there are deleted too (its name, build record and, unless \
            another image needs it, its blob's manifest); a registry that refuses deletes is named.
            """)

    @Flag(name: .customLong("dry-run"), help: "Print what would be removed, remove nothing.") var dryRun = false
    @Option(help: ArgumentHelp("Collect as if it were this date.", valueName: "date")) var now: String?
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let date = try now.map { try parseDate($0, flag: "--now") } ?? Date()
        let opened = try dryRun ? store.open() : store.openRecovered()
        let report = try await GarbageCollector.run(
            opened, now: date, dryRun: dryRun, cacheLimit: SourceCache.defaultLimit(), remote: try store.remote(for: opened),
            warn: warnOnStderr)
        let verb = dryRun ? "would remove" : "removed"
        for name in report.failed { print("\(dryRun ? "would delete" : "deleted") \(name), which did not pass its tests") }
        for name in report.purged { print("\(verb) the disk of \(name)") }
        for path in report.staleDirectories + report.pulls { print("\(verb) \(path)") }
        for entry in report.cache { print("\(verb) \(entry.kind.rawValue) \(entry.description)") }
        print("\(dryRun ? "would free" : "freed") \(ByteCount.human(Int64(report.bytes)))")
    }
}
