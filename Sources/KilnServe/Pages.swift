import Foundation
import KilnCore
import KilnModel
import KilnStore
import Mustache

/// The HTML pages: each reads what the API answers (``Browser``) and renders a template with
/// plain values (Mustache sees stored properties only, so the pages get dictionaries).
enum Pages {
    static let library: MustacheLibrary = {
        var library = MustacheLibrary()
        for (name, text) in Templates.all {
            // The templates are constants of this module: one that does not parse is a bug a
            // test catches (ServeTests renders every page), not a runtime condition.
            try! library.register(text, named: name)
        }
        return library
    }()

    static func render(_ template: String, _ context: [String: Any]) -> String {
        var context = context
        // Rows of a shared catalog this page had to leave out (``UnreadableRows``): said at
        // the top of the page, so a missing image is never silently missing.
        if let unreadable = UnreadableRows.current, unreadable.count > 0 {
            let one = unreadable.count == 1
            context["unreadable"] =
                [
                    "count": unreadable.count, "rows": one ? "row" : "rows", "are": one ? "is" : "are",
                    // The first few: a catalog with thousands of bad rows needs kiln verify, not a page.
                    "messages": Array(unreadable.all.sorted().prefix(5)),
                ]
                as [String: Any]
        }
        return library.render(plain(context) ?? [String: Any](), withTemplate: template) ?? "template \(template) is missing"
    }

    /// The context without optionals: an absent value is left out (a false section), a present
    /// one unwrapped (Mustache would print a boxed `nil` as "nil"); strings redacted and
    /// defused (``HTML/defused(_:)``). The SVG and the log are kiln's own markup, escaped by
    /// scalar and passed as ``Markup``.
    static func plain(_ value: Any) -> Any? {
        let mirror = Mirror(reflecting: value)
        if mirror.displayStyle == .optional {
            guard let wrapped = mirror.children.first?.value else { return nil }
            return plain(wrapped)
        }
        // Secrets are redacted before escaping (a value with `&` would not match after it).
        if let text = value as? String { return HTML.defused(Secrets.redact(text)) }
        if let dictionary = value as? [String: Any] { return dictionary.compactMapValues(plain) }
        if let array = value as? [Any] { return array.compactMap(plain) }
        return value
    }

    static func families(_ list: FamilyList, catalog: String) -> String {
        render(
            "families",
            [
                "hasFamilies": !list.families.isEmpty, "familyCount": list.families.count,
                "imageCount": list.families.reduce(0) { $0 + $1.total }, "catalog": catalog,
                "families": list.families.map { summary -> [String: Any] in
                    [
                        "family": summary.family, "head": summary.head as Any, "parentFamily": summary.parentFamily as Any,
                        "newest": summary.newest.map(day) as Any,
                        "counts": ImageState.allCases.compactMap { state in
                            summary.counts[state.rawValue].map {
                                ["state": state.rawValue, "css": state.rawValue.lowercased(), "count": $0]
                            }
                        },
                        "channels": summary.channels.sorted { $0.key < $1.key }.map { ["channel": $0.key, "image": $0.value] },
                    ]
                },
            ])
    }

    static func family(_ summary: FamilySummary, page: ImagePage, stale: [String: String], paging: Paging) -> String {
        var channelsOf: [String: [String]] = [:]
        for (channel, image) in summary.channels { channelsOf[image, default: []].append(channel) }
        let base = "/families/\(Path.segment(summary.family))" + (page.state.map { "?state=\($0)&" } ?? "?")
        var context: [String: Any] = [
            "family": summary.family, "total": summary.total, "head": summary.head as Any, "parentFamily": summary.parentFamily as Any,
            "state": page.state as Any,
            "states": ImageState.allCases.compactMap { state in
                summary.counts[state.rawValue].map { ["state": state.rawValue, "count": $0, "current": page.state == state.rawValue] }
            },
            "images": page.images.map { image -> [String: Any] in
                [
                    "name": image.name, "state": image.state, "css": image.state.lowercased(), "created": image.created,
                    "parent": image.parent as Any, "replacement": image.replacement as Any,
                    "obsoleteOn": image.obsoleteOn.map(dayOf) as Any,
                    "deleteOn": image.deleteOn.map(dayOf) as Any, "tests": image.tests?.status as Any,
                    "stale": stale[image.name] as Any, "channels": channelsOf[image.name, default: []].sorted(),
                ]
            },
        ]
        context.merge(pager(base: base, offset: page.offset, limit: page.limit, count: page.images.count, total: page.total)) { $1 }
        return render("family", context)
    }

    static func image(_ detail: ImageDetail, packages: PackageList, provenance: String?) -> String {
        let view = detail.image
        let changed = Set(detail.rebuild?.changed ?? [])
        let origin = view.origin
        let jobURL = origin?.jobURL.flatMap { $0.hasPrefix("https://") || $0.hasPrefix("http://") ? $0 : nil }
        var context: [String: Any] = [
            "name": view.name, "family": view.family, "version": view.version, "state": view.state, "css": view.state.lowercased(),
            "stale": detail.stale, "staleBecause": detail.staleBecause as Any, "description": view.description as Any,
            "chain": detail.chain.enumerated().map { ["name": $0.element, "more": $0.offset < detail.chain.count - 1] },
            "children": detail.children, "digest": view.digest, "size": ByteCount.human(view.size),
            "provider": view.artifact?.summary ?? view.provider, "created": view.created, "source": view.source,
            "replacement": view.replacement as Any, "obsoleteOn": view.obsoleteOn as Any, "deleteOn": view.deleteOn as Any,
            "origin": origin?.summary as Any, "jobURL": jobURL as Any, "buildID": view.buildID,
            "signatureStatus": detail.signature.status, "signatureKey": detail.signature.key as Any,
            "signatureProblems": detail.signature.problems,
            "tests": detail.tests.map { run -> [String: Any] in
                [
                    "run": run.run, "status": run.status, "passed": run.passed, "failed": run.failed, "skipped": run.skipped,
                    "failedStep": run.failedStep as Any,
                ]
            },
            "labels": view.labels.sorted { $0.key < $1.key }.map { ["key": $0.key, "value": $0.value] },
            "buildKey": view.buildKey as Any,
            "rebuild": detail.rebuild.map { ["previous": $0.previous, "changed": $0.changed, "hasChanges": !$0.changed.isEmpty] } as Any,
            "inputs": (view.keyInputs ?? [:]).sorted { $0.key < $1.key }.map {
                ["key": $0.key, "value": $0.value, "changed": changed.contains($0.key)]
            },
            "events": detail.events.map {
                [
                    "at": $0.at.formatted(.iso8601), "from": $0.fromState.rawValue, "to": $0.toState.rawValue, "actor": $0.actor,
                    "reason": $0.reason,
                ]
            },
            "packageTotal": packages.total, "query": packages.query ?? "",
            "packages": packages.packages.map {
                [
                    "name": $0.name, "version": $0.version, "architecture": $0.architecture, "source": $0.source,
                    "sourceVersion": $0.sourceVersion,
                ]
            },
            "provenance": provenance as Any,
        ]
        let base = "/images/\(Path.segment(view.name))?" + (packages.query.map { "q=\(Query.encode($0))&" } ?? "")
        context.merge(
            pager(
                base: base, offset: packages.offset, limit: packages.limit, count: packages.packages.count, total: packages.total,
                anchor: "#packages")
        ) { $1 }
        return render("image", context)
    }

    static func lineage(_ graph: LineageGraph, all: Bool) -> String {
        render(
            "lineage",
            [
                "nodeCount": graph.nodes.count, "layerCount": Set(graph.nodes.map(\.layer)).count, "staleCount": graph.staleCount,
                "all": all, "truncated": graph.truncated, "svg": Markup(graph.svg()),
            ])
    }

    static func channels(_ list: ChannelList) -> String {
        render(
            "channels",
            [
                "family": list.family, "current": list.current.map { ["channel": $0.channel, "image": $0.image] },
                "history": list.history.map { ["at": $0.at.formatted(.iso8601), "name": $0.name, "image": $0.image, "actor": $0.actor] },
            ])
    }

    static func builds(_ page: BuildPage) -> String {
        var context: [String: Any] = [
            "family": page.family as Any,
            "builds": page.builds.map { build -> [String: Any] in
                [
                    "id": build.id, "family": build.family, "status": build.status, "failedStep": build.failedStep as Any,
                    "image": build.image as Any, "started": build.started.formatted(.iso8601),
                ]
            },
        ]
        let base = "/builds?" + (page.family.map { "family=\(Query.encode($0))&" } ?? "")
        context.merge(pager(base: base, offset: page.offset, limit: page.limit, count: page.builds.count, total: page.total)) { $1 }
        return render("builds", context)
    }

    static func build(_ build: BuildRecord, log: String?, liveHere: Bool) -> String {
        let lines = log.map { LogView.lines(of: $0) } ?? []
        let running = build.status == .running && liveHere
        let noLog =
            build.status == .running
            ? "This build runs on \(build.host ?? "another machine"); its log is archived when it ends."
            : "This build has no archived log."
        return render(
            "build",
            [
                "id": build.id, "status": build.status.rawValue, "family": build.family, "image": build.image as Any,
                "started": build.started.formatted(.iso8601), "finished": build.finished?.formatted(.iso8601) as Any,
                "host": build.host as Any, "failedStep": build.failedStep as Any, "message": build.message as Any,
                "running": running, "hasLog": log != nil, "noLog": noLog, "lineCount": lines.count,
                "log": Markup(LogView.html(lines, failedStep: build.status == .running ? nil : build.failedStep)),
            ])
    }

    /// "showing 1–50 of 100,000" and the links to the pages either side.
    static func pager(base: String, offset: Int, limit: Int, count: Int, total: Int, anchor: String = "") -> [String: Any] {
        [
            "shown": count == 0 ? "none of \(total)" : "\(offset + 1)–\(offset + count) of \(total)",
            "previous": offset > 0 ? "\(base)offset=\(max(offset - limit, 0))&limit=\(limit)\(anchor)" : nil as String? as Any,
            "next": offset + count < total ? "\(base)offset=\(offset + limit)&limit=\(limit)\(anchor)" : nil as String? as Any,
        ]
    }

    static func day(_ date: Date) -> String { date.formatted(.iso8601.year().month().day()) }
    static func dayOf(_ iso: String) -> String { String(iso.prefix(10)) }
}

/// Markup kiln made itself, escaped by scalar as it was built: rendered with `{{{…}}}`.
struct Markup: CustomStringConvertible {
    let description: String
    init(_ text: String) { description = text }
}

enum Query {
    static func encode(_ value: String) -> String {
        value.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? ""
    }
}

/// A build log as a page shows it: escaped line by line, the failed step's lines marked, with
/// an anchor at the first of them.
enum LogView {
    static func lines(of log: String) -> [Substring] {
        log.split(separator: "\n", omittingEmptySubsequences: false).dropLast(log.hasSuffix("\n") ? 1 : 0).map { $0 }
    }

    static func html(_ lines: [Substring], failedStep: String?) -> String {
        var start = lines.count
        if let failedStep {
            let marker = "[kiln] step \(failedStep)"
            let failure = "[kiln] failed at \(failedStep)"
            start =
                lines.lastIndex { $0.contains(marker) } ?? lines.lastIndex { $0.contains(failure) || $0.contains("[kiln] cancelled at ") }
                ?? lines.count
        }
        var out = ""
        for (index, line) in lines.enumerated() {
            let text = HTML.escape(Secrets.redact(String(line)))
            if index == start {
                out += "<span class=\"failed marker\" id=\"failed\">\(text)</span>"
            } else if index > start {
                out += "<span class=\"failed\">\(text)</span>"
            } else {
                out += text + "\n"
            }
        }
        return out
    }
}
