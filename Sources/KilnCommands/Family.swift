import ArgumentParser
import Foundation
import KilnCore
import KilnModel
import KilnStore

struct Family: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "List families, or show one: versions, states, head, channels, children and history.",
        subcommands: [FamilyList.self, FamilyShow.self],
        defaultSubcommand: FamilyList.self)
}

struct FamilyList: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "List the families in the catalog.")

    @OptionGroup var store: StoreOptions

    func run() async throws {
        let catalog = try store.open().catalog
        let images = try catalog.images()
        let families = Dictionary(grouping: images, by: \.family)
        printTable(
            ["FAMILY", "HEAD", "IMAGES", "READY", "CHANNELS"],
            try families.keys.sorted().map { family in
                let members = families[family] ?? []
                let channels = try catalog.channels(of: family).sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }
                return [
                    family, try catalog.head(of: family)?.name ?? "-", String(members.count),
                    String(members.filter { $0.state == .ready }.count), channels.isEmpty ? "-" : channels.joined(separator: ","),
                ]
            })
    }
}

struct FamilyShow: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "show", abstract: "Show one family.")

    @Argument(help: ArgumentHelp("A family.", valueName: "family"), completion: Completions.families) var family: String
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let catalog = try store.open().catalog
        let images = try catalog.images().filter { $0.family == family }
        guard !images.isEmpty else { throw KilnError(.notFound, "no family named '\(family)' (see kiln family list)") }
        let head = try catalog.head(of: family)?.name
        let channels = try catalog.channels(of: family)
        print("family \(family): head \(head ?? "none (no READY image)")")
        for (name, image) in channels.sorted(by: { $0.key < $1.key }) { print("channel \(name) -> \(image)") }
        print()
        printTable(
            ["NAME", "STATE", "PARENT", "CREATED", "NOTE"],
            images.reversed().map { image in
                var notes: [String] = []
                if image.name == head { notes.append("head") }
                notes += channels.filter { $0.value == image.name }.map { "@\($0.key)" }.sorted()
                if let replacement = image.replacement { notes.append("replacement \(replacement)") }
                return [
                    image.name, image.state.rawValue, image.parent ?? "-", image.created.formatted(.iso8601), notes.joined(separator: ", "),
                ]
            })
        let children = Set(try images.flatMap { try catalog.children(of: $0.name) }.map(\.family)).sorted()
        if !children.isEmpty { print("\nbuilt on it: \(children.joined(separator: ", "))") }
        var history: [(Date, String)] = try catalog.history(family: family).map {
            ($0.at, "\($0.image) \($0.fromState.rawValue) -> \($0.toState.rawValue) by \($0.actor): \($0.reason)")
        }
        history += try catalog.channelHistory(of: family).map { ($0.at, "@\($0.name) -> \($0.image) by \($0.actor)") }
        if !history.isEmpty {
            print("\nhistory:")
            for (at, line) in history.sorted(by: { $0.0 < $1.0 }) { print("  \(at.formatted(.iso8601))  \(line)") }
        }
    }
}
