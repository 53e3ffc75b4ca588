import Foundation
import KilnCore
import KilnTestSupport
import Testing

// In the VM suite, so KILN_SKIP_VM_TESTS (make test-fast) skips it too.
extension VMBuildTests {
    @Test(
        "examples/debian, built for real: the lineage has its three layers and their edges, and the product's build log is served whole, as kiln logs prints it"
    )
    func serveRealStore() async throws {
        let build = try await SharedStore.shared.exampleBuild()
        #expect(build.status == 0, "\(build.stderr)")
        let home = SharedStore.shared.home
        let server = try ServeProcess(home: home)
        defer { server.stop() }
        func json(_ path: String) async throws -> [String: Any] {
            let answer = try await server.get(path)
            #expect(answer.status == 200, "\(path): \(answer.status) \(answer.body.prefix(300))")
            return try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        }
        // Other tests build on this store while this one runs: the product's own chain is what
        // is checked, not the store's whole shape.
        let product = try #require(try await json("/api/families/shop-web")["head"] as? String)
        let detail = try await json("/api/images/\(product)")
        let chain = try #require(detail["chain"] as? [String])
        #expect(chain.count == 2 && chain[0].hasPrefix("debian-12-nginx-v") && chain[1].hasPrefix("debian-12-base-v"), "\(chain)")
        let lineage = try await json("/api/lineage?all=true")
        let nodes = try #require(lineage["nodes"] as? [[String: Any]])
        let layer = Dictionary(
            uniqueKeysWithValues: nodes.compactMap { node in (node["name"] as? String).map { ($0, node["layer"] as? Int) } })
        #expect(layer[chain[1]] == 0 && layer[chain[0]] == 1 && layer[product] == 2, "\(layer)")
        let edges = Set((lineage["edges"] as? [[String: String]] ?? []).map { "\($0["parent"] ?? "") -> \($0["child"] ?? "")" })
        #expect(edges.isSuperset(of: ["\(chain[1]) -> \(chain[0])", "\(chain[0]) -> \(product)"]), "\(edges)")

        // The build log of a real VM build, in the page and in the API, equal to kiln logs'.
        let buildID = try #require((detail["image"] as? [String: Any])?["build_id"] as? String)
        let logs = try await SharedStore.shared.kiln(["logs", product])
        let served = try await server.get("/api/builds/\(buildID)/log")
        #expect(served.status == 200 && served.body == logs.stdout)
        #expect(served.body.contains("SSH is up") && served.body.contains("[kiln] step provision[0]"))
        let page = try await server.get("/builds/\(buildID)")
        #expect(page.status == 200 && page.body.contains("SSH is up") && page.body.contains("status-succeeded"))
        // The same graph as Chromium draws it: the product's chain as three layers joined by edges.
        let dom = try await Chromium.dom(server.base + "/lineage?all=true")
        for (parent, child) in [(chain[1], chain[0]), (chain[0], product)] {
            #expect(dom.contains("data-parent=\"\(parent)\" data-child=\"\(child)\""), "no edge \(parent) -> \(child) in the SVG")
        }
        for (name, layer) in [(chain[1], 0), (chain[0], 1), (product, 2)] {
            #expect(dom.contains("data-name=\"\(name)\" data-layer=\"\(layer)\""), "\(name) is not drawn in layer \(layer)")
        }
        _ = try await Chromium.screenshot(server.base + "/lineage", name: "vm-lineage")
        _ = try await Chromium.screenshot(server.base + "/builds/\(buildID)", name: "vm-build-log")
        #expect(server.stop() == 0)
    }
}
