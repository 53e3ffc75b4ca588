import ArgumentParser
import Foundation
import KilnBuild
import KilnCore
import KilnModel
import KilnStore

/// Options shared by the commands that change an image's state.
struct ChangeOptions: ParsableArguments {
    @Option(help: ArgumentHelp("Why: recorded in the family's history.", valueName: "text"))
    var reason: String?

    @Flag(name: .customLong("dry-run"), help: "Print what would change, change nothing.")
    var dryRun = false

    func apply(_ name: String, _ change: Transition, in store: Store) async throws {
        let events = try store.catalog.transition(name, change, dryRun: dryRun)
        for event in events {
            print(
                "\(dryRun ? "would change" : "changed") \(event.image): \(event.fromState.rawValue) -> \(event.toState.rawValue)"
            )
        }
        if !dryRun { await ProviderSync.changed(events.map(\.image), in: store, warn: warnOnStderr) }
    }
}

/// What `obsolete` and `delete` take: they differ only in the state they set.
struct RevokeArguments: ParsableArguments {
    @Argument(help: ArgumentHelp("An exact image name.", valueName: "name"), completion: Completions.imageNames) var name: String
    @Flag(help: "Mark every image built on it too.") var cascade = false
    @OptionGroup var change: ChangeOptions
    @OptionGroup var store: StoreOptions

    /// OBSOLETE or DELETED, with their descendants when `cascade` is set.
    func revoke(to state: ImageState) async throws {
        var transition = Transition(to: state, reason: change.reason ?? state.rawValue.lowercased())
        transition.cascade = cascade
        try await change.apply(name, transition, in: try store.open())
    }
}

/// A provider's note about its copy of an image (an endpoint without deprecation, say).
@Sendable func warnOnStderr(_ text: String) {
    try? FileHandle.standardError.write(contentsOf: Data("kiln: warning: \(text)\n".utf8))
}

/// `2026-12-01` or a full ISO 8601 time.
func parseDate(_ text: String, flag: String) throws -> Date {
    if let date = try? Date(text, strategy: .iso8601) { return date }
    if let date = try? Date(text + "T00:00:00Z", strategy: .iso8601) { return date }
    throw KilnError(.invalidInput, "\(flag) \(text): expected a date like 2026-12-01 or 2026-12-01T12:00:00Z")
}

/// `30d`, `12h`, `2w`: a time from now (`--obsolete-in`, `--delete-in`), in the lifecycle
/// block's grammar (``LifecyclePolicy/seconds(of:)``).
func parseRelative(_ text: String, flag: String, from now: Date) throws -> Date {
    guard let seconds = LifecyclePolicy.seconds(of: text) else {
        throw KilnError(.invalidInput, "\(flag) \(text): expected a count and a unit, like 12h, 30d or 2w")
    }
    return now.addingTimeInterval(TimeInterval(seconds))
}

struct Deprecate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mark an image DEPRECATED: still usable, but resolving or building on it warns.")

    @Argument(help: ArgumentHelp("An exact image name.", valueName: "name"), completion: Completions.imageNames) var name: String
    @Option(help: ArgumentHelp("The image to use instead.", valueName: "name"), completion: Completions.imageNames) var replacement: String?
    @Option(name: .customLong("obsolete-on"), help: ArgumentHelp("When rotation makes it OBSOLETE.", valueName: "date"))
    var obsoleteOn: String?
    @Option(name: .customLong("delete-on"), help: ArgumentHelp("When rotation makes it DELETED.", valueName: "date"))
    var deleteOn: String?
    @Option(
        name: .customLong("obsolete-in"),
        help: ArgumentHelp("As --obsolete-on, from now: 12h, 30d, 2w (a lifecycle: duration).", valueName: "time"))
    var obsoleteIn: String?
    @Option(name: .customLong("delete-in"), help: ArgumentHelp("As --delete-on, from now: 12h, 30d, 2w.", valueName: "time"))
    var deleteIn: String?
    @OptionGroup var change: ChangeOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let now = Date()
        var transition = Transition(to: .deprecated, reason: change.reason ?? "deprecated", now: now)
        transition.replacement = replacement
        transition.obsoleteOn = try Self.date(on: obsoleteOn, in: obsoleteIn, flag: "obsolete", now: now)
        transition.deleteOn = try Self.date(on: deleteOn, in: deleteIn, flag: "delete", now: now)
        // Rotation would act on a past date at once, and an image cannot be DELETED before it
        // is OBSOLETE: both are mistakes to say now, not surprises later.
        for (flag, date) in [("obsolete", transition.obsoleteOn), ("delete", transition.deleteOn)] {
            if let date, date <= now {
                throw KilnError(.invalidInput, "the \(flag) date \(date.formatted(.iso8601)) is not in the future")
            }
        }
        if let obsolete = transition.obsoleteOn, let delete = transition.deleteOn, delete < obsolete {
            throw KilnError(
                .invalidInput,
                "the delete date \(delete.formatted(.iso8601)) comes before the obsolete date \(obsolete.formatted(.iso8601))")
        }
        try await change.apply(name, transition, in: try store.open())
    }

    /// `--X-on DATE` or `--X-in TIME`, not both.
    static func date(on: String?, in relative: String?, flag: String, now: Date) throws -> Date? {
        if on != nil && relative != nil { throw KilnError(.invalidInput, "give --\(flag)-on or --\(flag)-in, not both") }
        if let on { return try parseDate(on, flag: "--\(flag)-on") }
        return try relative.map { try parseRelative($0, flag: "--\(flag)-in", from: now) }
    }
}

struct Undeprecate: AsyncParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Make a DEPRECATED or OBSOLETE image READY again.")

    @Argument(help: ArgumentHelp("An exact image name.", valueName: "name"), completion: Completions.imageNames) var name: String
    @OptionGroup var change: ChangeOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        try await change.apply(name, Transition(to: .ready, reason: change.reason ?? "undeprecated"), in: try store.open())
    }
}

struct Obsolete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mark an image OBSOLETE: resolving it or building on it is an error.",
        discussion: "Images built on it must be OBSOLETE or DELETED already, or be marked too with --cascade.")

    @OptionGroup var arguments: RevokeArguments

    func run() async throws { try await arguments.revoke(to: .obsolete) }
}

struct Delete: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Mark an image DELETED: unusable; its disk stays until it is purged.",
        discussion: """
            The head of a family cannot be deleted (roll the family back first). Images built on \
            it must be DELETED already, or be marked too with --cascade.
            """)

    @OptionGroup var arguments: RevokeArguments

    func run() async throws { try await arguments.revoke(to: .deleted) }
}

struct Rollback: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Deprecate a family's head: the family resolves to its previous READY image.")

    @Argument(help: ArgumentHelp("A family.", valueName: "family"), completion: Completions.families) var family: String
    @OptionGroup var change: ChangeOptions
    @OptionGroup var store: StoreOptions

    func run() async throws {
        let store = try store.open()
        let (from, to) = try store.catalog.rollback(family: family, reason: change.reason, dryRun: change.dryRun)
        if change.dryRun {
            print("would deprecate \(from.name); the family would resolve to \(to.name)")
        } else {
            print("\(family): \(from.name) is DEPRECATED; the family resolves to \(to.name)")
            await ProviderSync.changed([from.name], in: store, warn: warnOnStderr)
        }
    }
}

struct Resolve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Print the exact image name to deploy or build from.",
        discussion: """
            A family resolves to its newest READY image; FAMILY@CHANNEL to the image the channel \
            points at. An exact name resolves to itself: with a \
            warning naming the replacement when it is DEPRECATED, and as an error when it is \
            OBSOLETE or DELETED.
            """)

    @Argument(
        help: ArgumentHelp("A family, FAMILY@CHANNEL or an exact image name.", valueName: "family"), completion: Completions.imageNames)
    var name: String
    @Flag(help: "Print JSON (the same object as inspect --json).") var json = false
    @Flag(
        help: ArgumentHelp(
            "Print one flat JSON object of strings (name, family, version, state, digest, provider, and disk or artifact_id): what Terraform's external data source reads (docs/lifecycle.md)."
        ))
    var flat = false
    @OptionGroup var store: StoreOptions

    func validate() throws {
        if json && flat { throw ValidationError("--json and --flat are two forms of one answer: give one") }
    }

    func run() async throws {
        let store = try store.open()
        let image = try store.catalog.resolve(name)
        switch image.state {
        case .ready: break
        case .deprecated:
            printError("kiln: warning: \(image.name) is DEPRECATED" + (image.replacement.map { "; use \($0) instead" } ?? ""))
        case .obsolete, .deleted:
            throw KilnError(
                .invalidInput, "\(image.name) is \(image.state.rawValue)" + (image.replacement.map { "; use \($0)" } ?? ""))
        case .testing, .failed:
            throw KilnError(.invalidInput, try untestedMessage(image, catalog: store.catalog))
        }
        if json {
            try printJSON(ImageView(image, store: store))
        } else if flat {
            try printJSON(Self.flatView(ImageView(image, store: store)))
        } else {
            print(image.name)
        }
    }

    /// Terraform's `external` data source takes an object whose values are all strings, so
    /// nothing nested and no nulls: absent fields are left out.
    static func flatView(_ view: ImageView) -> [String: String] {
        var flat = [
            "name": view.name, "family": view.family, "version": view.version, "state": view.state, "digest": view.digest,
            "provider": view.provider, "created": view.created,
        ]
        flat["parent"] = view.parent
        flat["disk"] = view.disk
        flat["artifact_id"] = view.artifact?.id
        flat["region"] = view.artifact?.details["region"]
        return flat
    }
}
