import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif
#if canImport(FoundationXML)
    import FoundationXML
#endif

/// An XML document as a tree of elements, each with its text: enough to read EC2's answers,
/// which are plain nested elements (lists are `<xSet><item>…</item></xSet>`).
struct XMLTree: Sendable, Equatable {
    /// Without a namespace prefix.
    var name: String
    /// The element's own character data; meaningful for leaves.
    var text: String
    var children: [XMLTree]

    func child(_ name: String) -> XMLTree? { children.first { $0.name == name } }

    /// A child's text; nil when the child is absent or empty (EC2 writes `<ipAddress/>` for none).
    func text(_ name: String) -> String? {
        guard let text = child(name)?.text, !text.isEmpty else { return nil }
        return text
    }

    /// The `item` children of the list `name`.
    func items(_ name: String) -> [XMLTree] { child(name)?.children.filter { $0.name == "item" } ?? [] }

    /// The root element, or nil when the data is not well-formed XML.
    static func parse(_ data: Data) -> XMLTree? {
        let parser = XMLParser(data: data)
        let builder = TreeBuilder()
        parser.delegate = builder
        parser.shouldProcessNamespaces = false
        parser.shouldResolveExternalEntities = false
        guard parser.parse() else { return nil }
        return builder.root
    }
}

private final class TreeBuilder: NSObject, XMLParserDelegate {
    var stack: [XMLTree] = []
    var root: XMLTree?

    func parser(
        _ parser: XMLParser, didStartElement elementName: String, namespaceURI: String?, qualifiedName: String?,
        attributes: [String: String] = [:]
    ) {
        let local = elementName.split(separator: ":").last.map(String.init) ?? elementName
        stack.append(XMLTree(name: local, text: "", children: []))
    }

    func parser(_ parser: XMLParser, foundCharacters string: String) {
        if !stack.isEmpty { stack[stack.count - 1].text += string }
    }

    func parser(_ parser: XMLParser, foundCDATA block: Data) {
        if !stack.isEmpty { stack[stack.count - 1].text += String(decoding: block, as: UTF8.self) }
    }

    func parser(_ parser: XMLParser, didEndElement elementName: String, namespaceURI: String?, qualifiedName: String?) {
        guard var done = stack.popLast() else { return }
        // Whitespace between child elements is layout, not text.
        if !done.children.isEmpty && done.text.allSatisfy(\.isWhitespace) { done.text = "" }
        if stack.isEmpty { root = done } else { stack[stack.count - 1].children.append(done) }
    }
}
