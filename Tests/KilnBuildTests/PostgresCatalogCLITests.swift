import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTestSupport
import Testing

@testable import KilnBuild

/// kiln's commands on a PostgreSQL catalog, as separate processes (the test server of scripts/test-postgres).
@Suite("PostgreSQL catalog from the command line")
struct PostgresCatalogCLITests {
    @Test("images, inspect, promote, resolve and family show work on a PostgreSQL catalog given by --catalog or KILN_CATALOG")
    func commandsOnPostgres() async throws {
        let workspace = try Workspace(backend: .postgresql)
        defer { workspace.remove() }
        let url = try #require(workspace.catalog)
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        let home = workspace.store.root
        let listing = try await CLI.kiln(["images", "--json", "--home", home, "--catalog", url])
        #expect(listing.status == 0, "\(listing.stderr)")
        let list = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
        #expect(Set(list.compactMap { $0["name"] as? String }) == Set(images.map(\.name)))
        let inspect = try await CLI.kiln(["inspect", "app", "--home", home], environment: ["KILN_CATALOG": url])
        #expect(inspect.status == 0 && inspect.stdout.contains(images[1].name), "\(inspect.stderr)")
        let promote = try await CLI.kiln(["promote", "app", "--channel", "dev", "--home", home, "--catalog", url])
        #expect(promote.status == 0, "\(promote.stderr)")
        let resolve = try await CLI.kiln(["resolve", "app@dev", "--home", home, "--catalog", url])
        #expect(resolve.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == images[1].name)
        let family = try await CLI.kiln(["family", "show", "app", "--home", home, "--catalog", url])
        #expect(family.status == 0 && family.stdout.contains("dev"), "\(family.stdout)\(family.stderr)")
        // The store's own SQLite file was never the catalog.
        let local = try await CLI.kiln(["images", "--json", "--home", home])
        #expect((try JSONSerialization.jsonObject(with: Data(local.stdout.utf8)) as? [Any])?.isEmpty == true)
    }

    @Test("a catalog URL kiln cannot use is refused with exit 2; an unreachable server fails without printing its password")
    func badCatalogs() async throws {
        let home = NSTemporaryDirectory() + "kiln-pgcli-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let wrong = try await CLI.kiln(["images", "--home", home, "--catalog", "mysql://db/kiln"])
        #expect(wrong.status == 2)
        #expect(wrong.stderr.contains("postgres://"))
        let unreachable = try await CLI.kiln(["images", "--home", home, "--catalog", "postgres://kiln:hunter2@127.0.0.1:1/kiln"])
        #expect(unreachable.status == 1)
        #expect(
            unreachable.stderr.contains("cannot connect to the catalog at postgres://kiln:***@127.0.0.1:1/kiln"), "\(unreachable.stderr)")
        #expect(!unreachable.stderr.contains("hunter2"))
    }
}
