import Foundation
import KilnCore
import KilnModel
import KilnStore
import NIOCore
import Synchronization

/// What the pages and the API show, read from the store and its catalog. Both render these
/// values, so a page never shows something the API does not answer (docs/serve.md).
struct Browser: Sendable {
    let store: Store
    private let summaryCache = CatalogCache<[FamilySummary]>(capacity: 1)
    /// Rendered answers (``KilnServer/cached(_:_:type:_:)``): 256 of at most 256 KiB, 64 MiB at worst.
    let answers = CatalogCache<(type: String, body: ByteBuffer)>(capacity: 256)
    static let largestKeptAnswer = 256 << 10

    init(store: Store) { self.store = store }

    var catalog: Catalog { store.catalog }

    /// Every family's summary. It counts every image (`GROUP BY`), so it is kept until the
    /// catalog changes: a page of a family with 100,000 versions then costs one indexed query.
    func summaries() throws -> [FamilySummary] {
        try summaryCache.get("", token: catalog.changeToken) { try catalog.familySummaries() }
    }

    /// Each family's head, by family (nil: no READY image).
    func heads() throws -> [String: String?] {
        Dictionary(uniqueKeysWithValues: try summaries().map { ($0.family, $0.head) })
    }

    /// The ancestors of an image whose parent is `parent`, parent first, down to the base (at
    /// most 64: a cycle a hostile catalog could hold ends there). `known` saves asking twice.
    func chain(from parent: String?, known: inout [String: ImageRecord]) throws -> [ImageRecord] {
        var chain: [ImageRecord] = []
        var next = parent
        while let name = next, chain.count < 64 {
            guard let record = try known[name] ?? catalog.image(named: name) else { break }
            known[name] = record
            chain.append(record)
            next = record.parent
        }
        return chain
    }

    func families() throws -> FamilyList {
        FamilyList(families: try summaries())
    }

    func family(_ name: String) throws -> FamilySummary {
        guard let summary = try summaries().first(where: { $0.family == name }) else {
            throw KilnError(.notFound, "no family named '\(name)' in this catalog")
        }
        return summary
    }

    func images(family: String, state: ImageState?, paging: Paging) throws -> ImagePage {
        let summary = try self.family(family)
        let total = state.map { summary.counts[$0.rawValue] ?? 0 } ?? summary.total
        let images = try catalog.images(family: family, state: state, offset: paging.offset, limit: paging.limit)
        let runs = try catalog.latestTestRuns(of: images.map(\.name))
        return ImagePage(
            family: family, state: state?.rawValue, offset: paging.offset, limit: paging.limit, total: total,
            images: images.map { ImageView($0, store: store, testRun: runs[$0.name]) })
    }

    /// Why each of these images is stale, by name (see ``Staleness``).
    func staleness(of images: [ImageView]) throws -> [String: String] {
        let heads = try heads()
        var known: [String: ImageRecord] = [:]
        var reasons: [String: String] = [:]
        for view in images {
            reasons[view.name] = Staleness.reason(chain: try chain(from: view.parent, known: &known), heads: heads)
        }
        return reasons
    }

    /// The image named `name`.
    func record(_ name: String) throws -> ImageRecord {
        try Self.found("image", named: name) { try catalog.image(named: name) }
    }

    /// What `read` finds, else 404 — or, when its row was there but could not be read
    /// (``UnreadableRows``), a fault of the catalog said as such (500), not "no such image".
    static func found<T>(_ what: String, named name: String, _ read: () throws -> T?) throws -> T {
        let before = UnreadableRows.current?.all ?? []
        if let value = try read() { return value }
        if let why = UnreadableRows.current?.all.subtracting(before).min() {
            throw KilnError(.storeInconsistent, "\(what) '\(name)' is in the catalog, but its row cannot be read: \(why)")
        }
        throw KilnError(.notFound, "no \(what) \(what == "build" ? "with id" : "named") '\(name)' in this catalog")
    }

    func image(_ name: String) throws -> ImageDetail {
        let image = try record(name)
        var known: [String: ImageRecord] = [:]
        let chain = try chain(from: image.parent, known: &known)
        let stale = Staleness.reason(chain: chain, heads: try heads())
        let (problems, signer) = Verifier.checkProvenance(store, image, trusted: (try? store.trustedKeys()) ?? [], requireSignature: false)
        let signature: SignatureStatus =
            if let signer, problems.isEmpty { SignatureStatus(status: "verified", key: signer, problems: []) } else if !problems.isEmpty {
                SignatureStatus(status: "problem", key: signer, problems: problems)
            } else { SignatureStatus(status: "unsigned", key: nil, problems: []) }
        return ImageDetail(
            image: ImageView(image, store: store, testRun: try catalog.latestTestRun(of: image.name)),
            chain: chain.map(\.name), children: try catalog.children(of: image.name).map(\.name), stale: stale != nil,
            staleBecause: stale, rebuild: try rebuildReason(of: image), signature: signature,
            events: try catalog.history(image: image.name),
            tests: try catalog.testRuns(of: image.name).map { TestsView($0, store: store) },
            packages: try catalog.packages(of: image.name)?.packages.count)
    }

    /// Why this image was built rather than its family's previous one reused: the build-key
    /// inputs that differ between the two.
    func rebuildReason(of image: ImageRecord) throws -> RebuildReason? {
        guard let previous = try catalog.previous(of: image) else { return nil }
        func entries(_ json: String?) -> [String: String] {
            json.flatMap { try? JSONDecoder().decode([String: String].self, from: Data($0.utf8)) } ?? [:]
        }
        let now = entries(image.keyInputs)
        let before = entries(previous.keyInputs)
        let changed = Set(now.keys).union(before.keys).filter { now[$0] != before[$0] }.sorted()
        return RebuildReason(previous: previous.name, changed: changed)
    }

    func packages(of name: String, query: String?, paging: Paging) throws -> PackageList {
        _ = try record(name)
        let all = try catalog.packages(of: name)?.packages ?? []
        let needle = query?.lowercased() ?? ""
        let matching =
            needle.isEmpty ? all : all.filter { $0.name.lowercased().contains(needle) || $0.source.lowercased().contains(needle) }
        return PackageList(
            image: name, query: query, offset: paging.offset, limit: paging.limit, total: matching.count,
            packages: Array(matching.dropFirst(paging.offset).prefix(paging.limit)))
    }

    func channels(of family: String) throws -> ChannelList {
        let summary = try self.family(family)
        return ChannelList(
            family: family, current: summary.channels.sorted { $0.key < $1.key }.map { ChannelPointer(channel: $0.key, image: $0.value) },
            history: try catalog.channelHistory(of: family).reversed())
    }

    func lineage(all: Bool) throws -> LineageGraph {
        let states: Set<ImageState> = all ? Set(ImageState.allCases) : [.ready, .testing, .deprecated, .failed]
        let (images, truncated) = try catalog.lineage(states: states, limit: LineageGraph.maximumNodes)
        return LineageGraph(images: images, heads: try heads(), truncated: truncated)
    }

    func builds(family: String?, paging: Paging) throws -> BuildPage {
        let page = try catalog.builds(family: family, offset: paging.offset, limit: paging.limit)
        return BuildPage(
            family: family, offset: page.offset, limit: page.limit, total: page.total, builds: page.items.map(BuildView.init))
    }

    func build(_ id: String) throws -> BuildRecord {
        try Self.found("build", named: id) { try catalog.build(id: id) }
    }

    /// The build's log: the archive's `build.log` (or `tests.log`) once it is archived, the
    /// scratch file while it runs on this machine. Both were redacted as they were written.
    func log(of build: BuildRecord) throws -> String? {
        // A shared catalog is written by other machines: a row naming a path outside the
        // store's logs/ (or a build id that is a path) is not followed.
        guard Self.isPlainName(build.id) else { throw KilnError(.storeInconsistent, "build id '\(build.id)' is not a plain name") }
        if let archive = build.log {
            guard archive.hasPrefix("logs/"), Self.isPlainName(String(archive.dropFirst("logs/".count))) else {
                throw KilnError(.storeInconsistent, "build \(build.id)'s log '\(archive)' is not in the store's logs/")
            }
            let path = store.absolute(archive)
            let data = try LogArchive.read(path, entry: "build.log") ?? LogArchive.read(path, entry: "tests.log")
            return data.map { String(decoding: $0, as: UTF8.self) }
        }
        // Decoded leniently: one invalid UTF-8 byte from a guest must not hide the whole log.
        return liveLogPath(of: build).flatMap { FileManager.default.contents(atPath: $0) }.map { String(decoding: $0, as: UTF8.self) }
    }

    func liveLogPath(of build: BuildRecord) -> String? {
        Self.isPlainName(build.id) ? store.scratchDirectory(buildID: build.id) + "/build.log" : nil
    }

    /// One path component: no separator, not `.` or `..`.
    static func isPlainName(_ name: String) -> Bool {
        !name.isEmpty && name != "." && name != ".." && !name.contains("/") && !name.contains("\0")
    }
}

/// `offset` and `limit` of a listing, checked: a bad value is the caller's mistake (400).
struct Paging: Sendable {
    var offset: Int
    var limit: Int

    static let defaultLimit = 50

    init(offset: Int = 0, limit: Int = Paging.defaultLimit) { (self.offset, self.limit) = (offset, limit) }

    init(offset: Substring?, limit: Substring?) throws {
        self.init()
        if let offset {
            guard let value = Int(offset), value >= 0, value <= 10_000_000 else {
                throw KilnError(.invalidInput, "offset must be a whole number from 0 to 10000000, not '\(offset)'")
            }
            self.offset = value
        }
        if let limit {
            guard let value = Int(limit), (1...Catalog.maximumPage).contains(value) else {
                throw KilnError(.invalidInput, "limit must be a whole number from 1 to \(Catalog.maximumPage), not '\(limit)'")
            }
            self.limit = value
        }
    }
}

/// An image is stale when it stands on an image that is no longer its family's head: a newer
/// base (or app layer) exists, and this image has not been rebuilt on it.
enum Staleness {
    /// Why an image whose ancestors are `chain` (parent first) is stale, or nil.
    static func reason(chain: [ImageRecord], heads: [String: String?]) -> String? {
        for ancestor in chain {
            if let head = heads[ancestor.family] ?? nil, head != ancestor.name {
                return "built on \(ancestor.name); \(ancestor.family)'s head is now \(head)"
            }
        }
        return nil
    }
}

/// Values made from the catalog alone (the family summaries, listings, the lineage), kept while
/// the catalog's change token stays the same (two seconds on PostgreSQL, which has none), the
/// `capacity` most recent. A catalog changes a few times an hour; a dashboard reloads the same
/// pages all day. Answers that also read files the catalog does not cover (an image's
/// provenance and signature, logs) are never kept.
final class CatalogCache<Value: Sendable>: Sendable {
    private struct Entry: Sendable {
        var token: String?
        var made: ContinuousClock.Instant
        var value: Value
        /// Catalog rows left out of `value` (``UnreadableRows``): counted again each time it is used.
        var unreadable: Set<String>
    }
    private let entries = Mutex<[String: Entry]>([:])
    let capacity: Int
    static var lifetime: Duration { .seconds(2) }

    init(capacity: Int) { self.capacity = capacity }

    /// The value kept under `key` while `token` is unchanged, else `make()`'s; `keep` says
    /// whether a new value may be kept.
    func get(_ key: String, token: String?, keep: (Value) -> Bool = { _ in true }, make: () throws -> Value) throws -> Value {
        let now = ContinuousClock.now
        if let kept = entries.withLock({ $0[key] }), kept.token == token, token != nil || now - kept.made < Self.lifetime {
            UnreadableRows.current?.add(kept.unreadable)
            return kept.value
        }
        let unreadable = UnreadableRows()
        let value = try UnreadableRows.$current.withValue(unreadable) { try make() }
        UnreadableRows.current?.add(unreadable.all)
        guard keep(value) else { return value }
        entries.withLock { entries in
            if entries[key] == nil, entries.count >= capacity, let oldest = entries.min(by: { $0.value.made < $1.value.made })?.key {
                entries[oldest] = nil
            }
            entries[key] = Entry(token: token, made: now, value: value, unreadable: unreadable.all)
        }
        return value
    }
}
