import ArgumentParser
import Foundation
import KilnBuild
import KilnModel
import KilnStore

struct Rotate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply every family's lifecycle policy: age older images toward DELETED.",
        discussion: """
            For every family, every image except the newest `keep` READY ones, channel targets \
            and images labelled pinned: "true" moves one step when its date has come: READY -> \
            DEPRECATED (with obsolete and delete dates), DEPRECATED -> OBSOLETE, OBSOLETE -> \
            DELETED (with a purge date, after which kiln gc removes its disk). An image that other \
            usable images are built on waits. See docs/lifecycle.md.
            """)

    @Option(help: ArgumentHelp("Only this family.", valueName: "family"), completion: Completions.families) var family: String?
    @Flag(name: .customLong("dry-run"), help: "Print what would change, change nothing.") var dryRun = false
    @Option(help: ArgumentHelp("Rotate as if it were this date (testing, catching up).", valueName: "date")) var now: String?
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let date = try now.map { try parseDate($0, flag: "--now") } ?? Date()
        let opened = try store.open()
        let (actions, skipped) = try opened.catalog.rotate(family: family, now: date, dryRun: dryRun)
        for action in actions {
            print("\(dryRun ? "would change" : "changed") \(action.image): \(action.from.rawValue) -> \(action.to.rawValue)")
        }
        if !dryRun { await ProviderSync.changed(actions.map(\.image), in: opened, warn: warnOnStderr) }
        for action in skipped { print("kept \(action.image) \(action.from.rawValue): \(action.note)") }
        if actions.isEmpty && skipped.isEmpty { print("nothing to rotate") }
    }
}
