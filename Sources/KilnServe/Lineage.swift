import Foundation
import KilnModel

/// The store's images as a graph: base → application → product, an edge from each parent to
/// each child. A node is stale when an image it stands on is no longer its family's head.
struct LineageGraph: Codable, Sendable {
    /// More nodes than this make an unreadable picture: the newest are drawn, with their ancestors.
    static let maximumNodes = 300

    struct Node: Codable, Sendable {
        var name: String
        var family: String
        var version: String
        var state: String
        /// 0 for a base, 1 for a layer on a base, …
        var layer: Int
        var head: Bool
        var stale: Bool
    }

    struct Edge: Codable, Sendable {
        var parent: String
        var child: String
    }

    var nodes: [Node]
    var edges: [Edge]
    var truncated: Bool

    init(images: [ImageRecord], heads: [String: String?], truncated: Bool) {
        let byName = Dictionary(images.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        var layers: [String: Int] = [:]
        func layer(_ image: ImageRecord, depth: Int = 0) -> Int {
            if let known = layers[image.name] { return known }
            let value = image.parent.flatMap { byName[$0] }.map { depth < 64 ? layer($0, depth: depth + 1) + 1 : 0 } ?? 0
            layers[image.name] = value
            return value
        }
        // The same rule as an image's page (``Staleness``), on ancestors this graph already holds.
        func isStale(_ image: ImageRecord) -> Bool {
            var chain: [ImageRecord] = []
            var next = image.parent
            while let name = next, chain.count < 64, let parent = byName[name] {
                chain.append(parent)
                next = parent.parent
            }
            return Staleness.reason(chain: chain, heads: heads) != nil
        }
        nodes = images.map { image in
            Node(
                name: image.name, family: image.family, version: image.version, state: image.state.rawValue, layer: layer(image),
                head: (heads[image.family] ?? nil) == image.name, stale: isStale(image))
        }
        edges = images.compactMap { image in image.parent.flatMap { byName[$0] }.map { Edge(parent: $0.name, child: image.name) } }
        self.truncated = truncated
    }

    var staleCount: Int { nodes.filter(\.stale).count }

    // MARK: - Drawing

    private static let (boxWidth, boxHeight, columnGap, rowGap, margin) = (260, 46, 90, 14, 20)

    /// The graph as SVG, laid out on the server: one column per layer, families grouped in a
    /// column, newest first. Colours are presentation attributes, so the file stands alone
    /// (and needs no inline style, which the pages' content policy forbids).
    func svg() -> String {
        var rows: [Int: Int] = [:]
        var position: [String: (x: Int, y: Int)] = [:]
        // A base column sorted by family, newest first; each later column in the order of the
        // parents' rows, so edges run mostly straight across.
        let parentOf = Dictionary(edges.map { ($0.child, $0.parent) }, uniquingKeysWith: { first, _ in first })
        var rowOf: [String: Int] = [:]
        var ordered: [Node] = []
        for layer in Set(nodes.map(\.layer)).sorted() {
            let column = nodes.filter { $0.layer == layer }.sorted {
                let (a, b) = (parentOf[$0.name].flatMap { rowOf[$0] } ?? -1, parentOf[$1.name].flatMap { rowOf[$0] } ?? -1)
                return (a, $0.family, $1.version) < (b, $1.family, $0.version)
            }
            for (row, node) in column.enumerated() { rowOf[node.name] = row }
            ordered += column
        }
        for node in ordered {
            let row = rows[node.layer, default: 0]
            rows[node.layer] = row + 1
            position[node.name] = (
                Self.margin + node.layer * (Self.boxWidth + Self.columnGap), Self.margin + row * (Self.boxHeight + Self.rowGap)
            )
        }
        let width = Self.margin * 2 + ((rows.keys.max() ?? 0) + 1) * (Self.boxWidth + Self.columnGap) - Self.columnGap
        let height = Self.margin * 2 + max(rows.values.max() ?? 0, 1) * (Self.boxHeight + Self.rowGap) - Self.rowGap
        var out =
            "<svg xmlns=\"http://www.w3.org/2000/svg\" class=\"lineage\" width=\"\(width)\" height=\"\(height)\" viewBox=\"0 0 \(width) \(height)\" role=\"img\" aria-label=\"image lineage\">\n"
        out += "<title>kiln image lineage: \(nodes.count) images, \(staleCount) stale</title>\n"
        for edge in edges {
            guard let from = position[edge.parent], let to = position[edge.child] else { continue }
            let (x1, y1) = (from.x + Self.boxWidth, from.y + Self.boxHeight / 2)
            let (x2, y2) = (to.x, to.y + Self.boxHeight / 2)
            let bend = Self.columnGap / 2
            out +=
                "<path class=\"edge\" data-parent=\"\(HTML.escape(edge.parent))\" data-child=\"\(HTML.escape(edge.child))\" d=\"M\(x1),\(y1) C\(x1 + bend),\(y1) \(x2 - bend),\(y2) \(x2),\(y2)\" fill=\"none\" stroke=\"#8a8f98\" stroke-width=\"1.5\"/>\n"
        }
        for node in ordered {
            guard let at = position[node.name] else { continue }
            let colour = Self.colours[node.state] ?? ("#eeeeee", "#555555")
            let classes = ["node", "state-" + node.state.lowercased()] + (node.stale ? ["stale"] : []) + (node.head ? ["head"] : [])
            let name = HTML.escape(node.name)
            out += "<g class=\"\(classes.joined(separator: " "))\" data-name=\"\(name)\" data-layer=\"\(node.layer)\">"
            out += "<a href=\"/images/\(HTML.escape(Path.segment(node.name)))\">"
            out +=
                "<rect x=\"\(at.x)\" y=\"\(at.y)\" width=\"\(Self.boxWidth)\" height=\"\(Self.boxHeight)\" rx=\"6\" fill=\"\(colour.fill)\" stroke=\"\(node.stale ? "#d9480f" : colour.stroke)\" stroke-width=\"\(node.head ? 3 : 1.5)\"\(node.stale ? " stroke-dasharray=\"6 3\"" : "")/>"
            out += "<text x=\"\(at.x + 10)\" y=\"\(at.y + 19)\" font-family=\"sans-serif\" font-size=\"13\" fill=\"#1d2125\">\(name)</text>"
            let note = [node.state, node.head ? "head" : nil, node.stale ? "stale" : nil].compactMap { $0 }.joined(separator: " · ")
            out +=
                "<text x=\"\(at.x + 10)\" y=\"\(at.y + 37)\" font-family=\"sans-serif\" font-size=\"11\" fill=\"\(node.stale ? "#d9480f" : "#4a5058")\">\(note)</text>"
            out += "</a></g>\n"
        }
        return out + "</svg>\n"
    }

    private static let colours: [String: (fill: String, stroke: String)] = [
        "READY": ("#e6f4ea", "#2b8a3e"), "TESTING": ("#e7f0fb", "#1c64b8"), "FAILED": ("#fdecea", "#c92a2a"),
        "DEPRECATED": ("#fff4e0", "#c77700"), "OBSOLETE": ("#f1f1f1", "#868e96"), "DELETED": ("#f8f8f8", "#adb5bd"),
    ]
}
