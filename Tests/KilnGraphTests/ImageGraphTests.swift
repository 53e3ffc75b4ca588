import Foundation
import KilnCore
import KilnModel
import KilnTemplates
import Testing

@testable import KilnGraph

@Suite("Image graph")
struct ImageGraphTests {
    func load(_ files: [String: String]) throws -> TemplateSet {
        let dir = NSTemporaryDirectory() + "kiln-graph-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for (name, text) in files { try text.write(toFile: dir + "/" + name, atomically: true, encoding: .utf8) }
        return try TemplateLoader(environment: [:]).load(path: dir)
    }

    func messages(_ error: any Error) -> [String] {
        (error as? ValidationFailure)?.diagnostics.map {
            "\(($0.file as NSString).lastPathComponent):\($0.line):\($0.column): \($0.message)"
        } ?? []
    }

    @Test("parents come before children whatever the file order")
    func topologicalOrder() throws {
        let set = try load([
            "1-product.yaml": "image: product\nfrom: {image: app}\n",
            "2-app.yaml": "image: app\nfrom: {image: base}\n",
            "3-base.yaml": "image: base\nfrom: {debootstrap: {suite: bookworm}}\n",
            "4-other.yaml": "image: other\nfrom: {image: base}\n",
        ])
        let graph = try ImageGraph(set)
        #expect(graph.order.map(\.family) == ["base", "app", "product", "other"])
        #expect(graph.descendants(of: "app").map(\.family) == ["app", "product"])
        #expect(graph.descendants(of: "base").map(\.family) == ["base", "app", "product", "other"])
    }

    @Test("a cycle is printed in full at the template that closes it")
    func cycle() throws {
        let set = try load([
            "a.yaml": "image: a\nfrom: {image: c}\n",
            "b.yaml": "image: b\nfrom: {image: a}\n",
            "c.yaml": "image: c\nfrom: {image: b}\n",
        ])
        #expect(throws: ValidationFailure.self) { try ImageGraph(set) }
        do {
            _ = try ImageGraph(set)
        } catch {
            #expect(messages(error) == ["a.yaml:2:7: cycle in the image graph: a -> c -> b -> a"])
        }
    }

    @Test("an unknown parent is an error unless the catalog has the family")
    func unknownParent() throws {
        let set = try load(["a.yaml": "image: a\nfrom:\n  image: elsewhere\n"])
        do {
            _ = try ImageGraph(set)
            Issue.record("expected an error")
        } catch {
            let text = messages(error)
            #expect(text.count == 1)
            #expect(text[0].hasPrefix("a.yaml:3:3: unknown parent family 'elsewhere'"))
        }
        let graph = try ImageGraph(set, knownFamilies: ["elsewhere"])
        #expect(graph.externalParents == ["elsewhere"])
    }
}
