import Foundation
import Hummingbird
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

@testable import KilnBuild
@testable import KilnServe

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Three layers built with the fake provider (base → app → product), then a new base, so the
/// old app and product are stale; a channel, a deprecation and a failed build of the product.
/// The product's template has a sensitive variable whose value must appear nowhere.
final class ServeScenario: @unchecked Sendable {
    static let secret = "s3cr3t-serve-value"
    let dir: String
    let store: Store
    private(set) var names: [String: [String]] = [:]
    private(set) var failedBuild = ""

    init() async throws {
        dir = NSTemporaryDirectory() + "kiln-serve-" + UUID().uuidString
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/t", withIntermediateDirectories: true)
        let disk = Data(repeating: 9, count: 1 << 20)
        try disk.write(to: URL(fileURLWithPath: dir + "/t/base.raw"))
        try Self.write(
            dir, "base",
            "image: base\nfrom: {file: {path: base.raw, sha256: \(Hashing.sha256Hex(disk))}}\nprovision:\n  - shell: echo base 1\n")
        try Self.write(dir, "app", "image: app\nfrom: {image: base}\nprovision:\n  - shell: echo app\nlabels: {layer: app}\n")
        try Self.write(
            dir, "product",
            """
            image: product
            description: "the product, keyed ${var.key}"
            from: {image: app}
            vars:
              key: {sensitive: true, default: \(Self.secret)}
            provision:
              - shell: {inline: "echo product $KEY", env: {KEY: "${var.key}"}}
            labels: {layer: product, key: "${var.key}"}
            """)
        store = try Store(root: dir + "/home")
        try await build()
        try store.catalog.promote(names["product"]![0], channel: "stable")
        // A new base: the app and product built on the old one are now stale.
        try write(
            "base", "image: base\nfrom: {file: {path: base.raw, sha256: \(Hashing.sha256Hex(disk))}}\nprovision:\n  - shell: echo base 2\n")
        try await build(only: ["base"])
        try store.catalog.transition(names["base"]![0], Transition(to: .deprecated, reason: "a newer base"))
        // A product build that fails at its step, with its log archived.
        try write(
            "product",
            """
            image: product
            from: {image: app}
            vars:
              key: {sensitive: true, default: \(Self.secret)}
            provision:
              - shell: {inline: "echo about to fail $KEY", env: {KEY: "${var.key}"}}
              - shell: "echo FAIL-HERE"
            """)
        _ = try? await build(only: ["product"])
        failedBuild = try #require(try store.catalog.builds(status: .failed).first?.id)
    }

    private func write(_ name: String, _ text: String) throws {
        try Self.write(dir, name, text)
    }

    private static func write(_ dir: String, _ name: String, _ text: String) throws {
        try text.write(toFile: dir + "/t/\(name).yaml", atomically: true, encoding: .utf8)
    }

    private func build(only: Set<String>? = nil) async throws {
        let set = try TemplateLoader(environment: [:]).load(path: dir + "/t")
        let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        for result in try await builder.build(try ImageGraph(set), secrets: set.sensitiveValues, selected: only) {
            names[result.image.family, default: []].append(result.image.name)
        }
    }

    func serve(listen: String = "127.0.0.1:0", environment: [String: String] = [:], arguments: [String] = []) throws -> ServeProcess {
        try ServeProcess(home: store.root, listen: listen, environment: environment, arguments: arguments)
    }

    /// Runs `sql` on the catalog with the sqlite3 tool, as another program sharing it would.
    func alter(_ sql: String) async throws {
        let update = try await ProcessRunner.run(try requiredTool("sqlite3"), [store.root + "/catalog.sqlite", sql])
        #expect(update.status == 0, "\(update.stderr)")
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }
}

/// Every page reached from `/` by internal links (at most 400), with its answer.
private func crawl(_ server: ServeProcess) async throws -> [String: ServeProcess.Answer] {
    var answers: [String: ServeProcess.Answer] = [:]
    var queue = ["/"]
    while let path = queue.popLast(), answers.count < 400 {
        guard answers[path] == nil else { continue }
        let answer = try await server.get(path)
        answers[path] = answer
        if answer.header("Content-Type")?.hasPrefix("text/html") == true {
            queue += links(in: answer.body).filter { answers[$0] == nil }
        }
    }
    return answers
}

/// Internal links of an HTML page (`href="/…"`), without their fragments.
private func links(in html: String) -> [String] {
    let pattern = try! NSRegularExpression(pattern: ##"href="(/[^"#]*)"##)
    return pattern.matches(in: html, range: NSRange(html.startIndex..., in: html)).compactMap {
        Range($0.range(at: 1), in: html).map { String(html[$0]).replacingOccurrences(of: "&amp;", with: "&") }
    }
}

@Suite("kiln serve: pages, API, lineage, live logs, access (fake provider; headless Chromium, schemathesis)")
struct ServeTests {
    @Test(
        "every page renders and every link on it resolves; the lineage SVG draws three layers with their edges and marks the stale ones; screenshots kept"
    )
    func pagesAndLineage() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let server = try scenario.serve()
        defer { server.stop() }
        // Crawl from the families page: every internal link answers 200, and no page shows a
        // secret or a Swift `nil`.
        let crawled = try await crawl(server)
        for (path, answer) in crawled {
            #expect(answer.status == 200, "\(path) answered \(answer.status): \(answer.body.prefix(300))")
            #expect(!answer.body.contains(ServeScenario.secret), "\(path) shows the sensitive value")
            if answer.header("Content-Type")?.hasPrefix("text/html") == true {
                #expect(!answer.body.contains(">nil<") && !answer.body.contains("/nil\""), "\(path) renders a nil")
            }
        }
        let seen = Set(crawled.keys)
        let product = try #require(scenario.names["product"]?.first)
        let oldApp = try #require(scenario.names["app"]?.first)
        let base = try #require(scenario.names["base"])
        for page in [
            "/", "/lineage", "/families/product", "/images/\(product)", "/families/product/channels", "/builds",
            "/builds/\(scenario.failedBuild)",
        ] {
            #expect(seen.contains(page), "the crawl never reached \(page)")
        }

        // Every API answer about every image and build: no sensitive value either.
        var answers: [String] = ["/api/families", "/api/lineage?all=true", "/api/builds?limit=500"]
        for names in scenario.names.values {
            for name in names {
                answers += ["/api/images/\(name)", "/api/images/\(name)/packages", "/api/images/\(name)/provenance"]
            }
        }
        for build in try scenario.store.catalog.builds() { answers += ["/api/builds/\(build.id)", "/api/builds/\(build.id)/log"] }
        for family in scenario.names.keys { answers += ["/api/families/\(family)/images", "/api/families/\(family)/channels"] }
        for path in answers {
            let answer = try await server.get(path)
            #expect(answer.status == 200 || (answer.status == 404 && path.hasSuffix("/provenance")), "\(path): \(answer.status)")
            #expect(!answer.body.contains(ServeScenario.secret), "\(path) shows the sensitive value")
        }

        // The lineage as Chromium draws it: three layers, each edge parent → child, the
        // images on the old base marked stale, the new base its family's head.
        let dom = try await Chromium.dom(server.base + "/lineage")
        func attribute(_ name: String, of element: String) -> [String] {
            let pattern = try! NSRegularExpression(pattern: "<\(element) [^>]*\(name)=\"([^\"]+)\"")
            return pattern.matches(in: dom, range: NSRange(dom.startIndex..., in: dom)).compactMap {
                Range($0.range(at: 1), in: dom).map { String(dom[$0]) }
            }
        }
        let layers = Dictionary(uniqueKeysWithValues: zip(attribute("data-name", of: "g"), attribute("data-layer", of: "g")))
        #expect(layers[base[0]] == "0" && layers[base[1]] == "0" && layers[oldApp] == "1" && layers[product] == "2", "\(layers)")
        let edges = Set(zip(attribute("data-parent", of: "path"), attribute("data-child", of: "path")).map { "\($0) -> \($1)" })
        #expect(edges == ["\(base[0]) -> \(oldApp)", "\(oldApp) -> \(product)"], "\(edges)")
        let classes = Dictionary(uniqueKeysWithValues: zip(attribute("data-name", of: "g"), attribute("class", of: "g")))
        #expect(classes[oldApp]?.contains("stale") == true && classes[product]?.contains("stale") == true, "\(classes)")
        #expect(classes[base[1]]?.contains("head") == true && classes[base[1]]?.contains("stale") == false)
        #expect(classes[base[0]]?.contains("state-deprecated") == true)

        // The failed build's page marks its failed step.
        let failed = try await server.get("/builds/\(scenario.failedBuild)")
        #expect(failed.body.contains("id=\"failed\"") && failed.body.contains("class=\"failed marker\""))
        let marked = try #require(failed.body.range(of: "id=\"failed\">"))
        #expect(
            failed.body[marked.upperBound...].prefix(200).contains("step provision[1]"), "\(failed.body[marked.upperBound...].prefix(200))")

        // Screenshots for a person to look at; each a real PNG of a page that rendered.
        for (name, path) in [
            ("families", "/"), ("lineage", "/lineage"), ("family", "/families/product"), ("image", "/images/\(product)"),
            ("channels", "/families/product/channels"), ("builds", "/builds"), ("failed-build", "/builds/\(scenario.failedBuild)"),
        ] {
            let png = try await Chromium.screenshot(server.base + path, name: name)
            let data = try Data(contentsOf: URL(fileURLWithPath: png))
            #expect(data.prefix(8) == Data([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) && data.count > 10_000, "\(png)")
        }
        #expect(server.stop() == 0)
    }

    @Test("the API answers what the pages show; bad parameters are 400 with a message, unknown names 404, writes 405; none is a 500")
    func api() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let server = try scenario.serve()
        defer { server.stop() }
        let product = try #require(scenario.names["product"]?.first)
        func json(_ path: String) async throws -> [String: Any] {
            let answer = try await server.get(path)
            #expect(answer.status == 200 && answer.header("Content-Type") == "application/json", "\(path): \(answer.status) \(answer.body)")
            return try #require(try JSONSerialization.jsonObject(with: Data(answer.body.utf8)) as? [String: Any])
        }
        let families = try #require(try await json("/api/families")["families"] as? [[String: Any]])
        #expect(families.map { $0["family"] as? String } == ["app", "base", "product"])
        let productFamily = try #require(families.first { $0["family"] as? String == "product" })
        #expect(productFamily["head"] as? String == product && productFamily["parent_family"] as? String == "app")
        #expect((productFamily["channels"] as? [String: String]) == ["stable": product])
        let detail = try await json("/api/images/\(product)")
        #expect(detail["stale"] as? Bool == true && (detail["stale_because"] as? String)?.contains("base") == true)
        #expect((detail["chain"] as? [String]) == [scenario.names["app"]![0], scenario.names["base"]![0]])
        #expect(((detail["image"] as? [String: Any])?["labels"] as? [String: String])?["key"] == "<sensitive>")
        let page = try await json("/api/families/base/images?limit=1&offset=1")
        #expect(page["total"] as? Int == 2 && (page["images"] as? [[String: Any]])?.first?["name"] as? String == scenario.names["base"]![0])
        let deprecated = try await json("/api/families/base/images?state=DEPRECATED")
        #expect(deprecated["total"] as? Int == 1)
        // Listings are kept until the catalog changes, and not a moment longer: another process
        // deprecating the app shows at once, in the API and on the page.
        let appBefore = try await json("/api/families/app/images")
        #expect((appBefore["images"] as? [[String: Any]])?.first?["state"] as? String == "READY")
        let pageBefore = try await server.get("/families/app")
        let deprecate = try await KilnBinary.run(
            ["deprecate", scenario.names["app"]![0], "--home", scenario.store.root, "--reason", "test"])
        #expect(deprecate.status == 0, "\(deprecate.stderr)")
        let appAfter = try await json("/api/families/app/images")
        #expect((appAfter["images"] as? [[String: Any]])?.first?["state"] as? String == "DEPRECATED", "\(appAfter)")
        let pageAfter = try await server.get("/families/app")
        #expect(pageBefore.body != pageAfter.body && pageAfter.body.contains("DEPRECATED (1)"))
        let builds = try await json("/api/builds?family=product")
        #expect((builds["builds"] as? [[String: Any]])?.first?["failed_step"] as? String != nil)
        let log = try await server.get("/api/builds/\(scenario.failedBuild)/log")
        #expect(log.status == 200 && log.body.contains("[kiln] failed at") && !log.body.contains(ServeScenario.secret))

        for (path, status, words) in [
            ("/api/families/base/images?limit=0", 400, "limit"), ("/api/families/base/images?limit=ten", 400, "limit"),
            ("/api/families/base/images?offset=-1", 400, "offset"), ("/api/families/base/images?state=GONE", 400, "state"),
            ("/api/lineage?all=maybe", 400, "all"), ("/api/builds?family=Bad%20Name", 400, "family"),
            ("/api/families/nope", 404, "nope"), ("/api/images/nope-v1", 404, "nope-v1"), ("/api/builds/nope/log", 404, "nope"),
            ("/api/no-such-thing", 404, "not found"), ("/families/nope", 404, "nope"),
        ] {
            let answer = try await server.get(path)
            #expect(answer.status == status && answer.body.contains(words), "\(path): \(answer.status) \(answer.body.prefix(300))")
        }
        for method in ["POST", "PUT", "DELETE", "PATCH"] {
            let answer = try await server.request("/api/families", method: method)
            #expect(answer.status == 405 && answer.header("Allow") == "GET, HEAD", "\(method): \(answer.status)")
        }
        // Nothing a browser could be tricked with: no framing, no sniffing, kiln's own script only.
        let headers = try await server.get("/")
        #expect(headers.header("Content-Security-Policy")?.contains("default-src 'none'") == true)
        #expect(headers.header("X-Frame-Options") == "DENY" && headers.header("X-Content-Type-Options") == "nosniff")
        #expect(server.stop() == 0)
    }

    @Test("/api/openapi.json describes exactly the /api/ routes the server has, and schemathesis finds no answer that breaks it")
    func openAPI() async throws {
        let router = try KilnServer(store: try temporaryStore(), address: ListenAddress(host: "127.0.0.1", port: 0), token: nil)
            .makeRouter()
        let routes = Set(
            router.routes.filter { $0.method == .get && "\($0.path)".hasPrefix("/api/") }.map {
                "\($0.path)".replacingOccurrences(of: #":([a-z]+)"#, with: "{$1}", options: .regularExpression)
            })
        let document = try #require(try JSONSerialization.jsonObject(with: Data(OpenAPI.document.utf8)) as? [String: Any])
        let paths = Set((document["paths"] as? [String: Any] ?? [:]).keys)
        #expect(routes == paths, "routes only: \(routes.subtracting(paths)); documented only: \(paths.subtracting(routes))")

        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let server = try scenario.serve()
        defer { server.stop() }
        let report = NSTemporaryDirectory() + "kiln-schemathesis-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: report) }
        // In a directory of its own: schemathesis leaves a .schemathesis cache where it runs.
        try FileManager.default.createDirectory(atPath: report, withIntermediateDirectories: true)
        let result = try await ProcessRunner.run(
            try requiredTool("schemathesis", package: "schemathesis (PyPI)"),
            [
                "run", server.base + "/api/openapi.json", "--checks", "all", "--max-examples", "40", "--seed", "20261205",
                "--report", "junit", "--report-dir", report,
            ], environment: ["NO_COLOR": "1"], workingDirectory: report, timeout: .seconds(600))
        #expect(result.status == 0, "\(result.stdout.suffix(4000))")
        #expect(result.stdout.contains("passed") && !result.stdout.contains("Selected: 0"), "\(result.stdout.suffix(800))")
    }

    @Test(
        "beyond loopback it will not start without a token; with one, the API answers 401 without it, browsers sign in to an HttpOnly cookie, and the token appears in no answer"
    )
    func token() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let refused = try await KilnBinary.run(["serve", "--home", scenario.store.root, "--listen", "0.0.0.0:0"])
        #expect(refused.status == 2 && refused.stderr.contains("KILN_SERVE_TOKEN"), "\(refused.stderr)")
        let short = try await KilnBinary.run(
            ["serve", "--home", scenario.store.root, "--listen", "0.0.0.0:0"], environment: ["KILN_SERVE_TOKEN": "short"])
        #expect(short.status == 2 && short.stderr.contains("too short"), "\(short.stderr)")
        let bad = try await KilnBinary.run(["serve", "--home", scenario.store.root, "--listen", "localhost"])
        #expect(bad.status == 2 && bad.stderr.contains("HOST:PORT"), "\(bad.stderr)")

        let token = "tok-" + UUID().uuidString
        let server = try scenario.serve(listen: "0.0.0.0:0", environment: ["KILN_SERVE_TOKEN": token])
        defer { server.stop() }
        let port = try #require(server.base.split(separator: ":").last)
        let local = "http://127.0.0.1:\(port)"
        func get(_ path: String, _ headers: [String: String] = [:]) async throws -> ServeProcess.Answer {
            try await ServeProcess.request(local + path, headers: headers)
        }
        let anonymous = try await get("/api/families")
        #expect(anonymous.status == 401 && anonymous.header("WWW-Authenticate")?.hasPrefix("Bearer") == true)
        #expect(try await get("/api/families", ["Authorization": "Bearer wrong"]).status == 401)
        #expect(try await get("/api/families", ["Authorization": "Bearer \(token)"]).status == 200)
        let page = try await get("/")
        #expect(page.status == 401 && page.body.contains("action=\"/login\""))
        // Signing in: a wrong token is refused; the right one sets an HttpOnly, SameSite=Strict cookie.
        let form = ["Content-Type": "application/x-www-form-urlencoded"]
        let wrong = try await ServeProcess.request(local + "/login", method: "POST", headers: form, body: Data("token=nope".utf8))
        #expect(wrong.status == 401)
        let signIn = try await ServeProcess.request(local + "/login", method: "POST", headers: form, body: Data("token=\(token)".utf8))
        let cookie = try #require(signIn.header("Set-Cookie"))
        #expect(signIn.status == 303 && cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"))
        let withCookie = try await get("/lineage", ["Cookie": String(cookie.prefix { $0 != ";" })])
        #expect(withCookie.status == 200 && withCookie.body.contains("<svg"))
        // The token is in no answer, signed in or not.
        for answer in [anonymous, page, wrong, signIn, withCookie] {
            #expect(!answer.body.contains(token))
        }
        #expect(server.stop() == 0)
    }

    @Test(
        "markup joined to a prepended or combining mark is still escaped, in pages, the SVG and logs; kiln's own credentials are redacted from HTML and JSON, escaped or not"
    )
    func hostileValues() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let product = try #require(scenario.names["product"]?.first)
        let password = "pa'ss&word/42x"
        let meta = "\u{0600}<meta http-equiv=refresh content=0;url=http://127.0.0.1:9/phish \u{0600}>"
        let sql = """
            UPDATE image SET description = '\(meta) \(password.replacingOccurrences(of: "'", with: "''"))',
              labels = '{"role": "\(meta)"}' WHERE name = '\(product)';
            """
        try await scenario.alter(sql)
        let server = try scenario.serve(environment: ["PGPASSWORD": password])
        defer { server.stop() }
        for path in ["/images/\(product)", "/families/product", "/images/\(product)?q=\(Query.encode(meta))", "/lineage"] {
            let page = try await server.get(path)
            #expect(page.status == 200 && !page.body.contains("<meta http-equiv"), "\(path) lets markup through")
            #expect(!page.body.contains("pa&#39;ss&amp;word") && !page.body.contains(password), "\(path) shows the password")
        }
        let dom = try await Chromium.dom(server.base + "/images/\(product)")
        #expect(!dom.contains("<meta http-equiv=\"refresh\""))
        let api = try await server.get("/api/images/\(product)")
        #expect(api.status == 200 && !api.body.contains("pa'ss") && api.body.contains("<sensitive>"), "\(api.body.prefix(400))")
        #expect(server.stop() == 0)
    }

    @Test(
        "rows another machine wrote badly into a shared catalog are left out and counted, every other page still answers, and no message shows a row's values"
    )
    func unreadableRows() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let product = try #require(scenario.names["product"]?.first)
        let oldBase = try #require(scenario.names["base"]?.first)
        let marker = "ROW-MARKER-71"
        try await scenario.alter(
            """
            UPDATE image SET created = 'yesterday', description = '\(marker)' WHERE name = '\(product)';
            UPDATE image SET state = 'MELTED' WHERE name = '\(oldBase)';
            UPDATE build SET started = 'never' WHERE id = '\(scenario.failedBuild)';
            """)
        let server = try scenario.serve()
        defer { server.stop() }
        let broken: Set<String> = ["/images/\(product)", "/images/\(oldBase)"]
        let crawled = try await crawl(server)
        for (path, answer) in crawled {
            #expect(!answer.body.contains(marker), "\(path) shows a value of an unreadable row")
            if broken.contains(path) {
                #expect(answer.status == 500 && answer.body.contains("its row cannot be read"), "\(path): \(answer.status)")
            } else {
                #expect(answer.status == 200, "\(path) answered \(answer.status): \(answer.body.prefix(300))")
            }
        }
        #expect(crawled.keys.contains("/families/product") && crawled.keys.contains("/lineage"))
        // The pages that left a row out say so, naming the row and the column.
        let family = try #require(crawled["/families/product"])
        // (The app family's "built on" needs the old base's row: two rows are left out.)
        #expect(family.body.contains("2 catalog rows could not be read"), "\(family.body.prefix(2000))")
        #expect(
            family.body.contains("row &quot;\(product)&quot;: the catalog&#39;s column &#39;created&#39; holds a value that is not a date"),
            "\(family.body.prefix(2000))")
        #expect(family.body.contains("row &quot;\(oldBase)&quot;: the catalog names an unknown image state &quot;MELTED&quot;"))
        #expect(family.header("Kiln-Unreadable-Rows") == "2")
        let builds = try #require(crawled["/builds"])
        #expect(builds.status == 200 && builds.header("Kiln-Unreadable-Rows") == "1")
        #expect(!builds.body.contains("href=\"/builds/\(scenario.failedBuild)\""), "the unreadable build is listed")

        // The API: the rest of the listing, the count in a header, the same again from the cache.
        for _ in 0..<2 {
            let images = try await server.get("/api/families/product/images")
            #expect(images.status == 200 && !images.body.contains(product), "\(images.body)")
            #expect(images.header("Kiln-Unreadable-Rows") == "2", "\(images.headers)")
        }
        let image = try await server.get("/api/images/\(product)")
        #expect(image.status == 500 && image.body.contains("its row cannot be read") && !image.body.contains(marker), "\(image.body)")
        let families = try await server.get("/api/families")
        #expect(families.status == 200 && !families.body.contains(marker))

        // The CLI stops at such a row, naming it and the column, not its values.
        let inspect = try await KilnBinary.run(["inspect", product, "--home", scenario.store.root])
        #expect(inspect.status != 0 && inspect.stderr.contains(product) && inspect.stderr.contains("'created'"), "\(inspect.stderr)")
        #expect(!inspect.stderr.contains(marker))
        #expect(server.stop() == 0)
    }

    @Test("live tails beyond --max-streams are answered 503 with a message, and a closed one frees its slot")
    func streamCap() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let id = "20261205T000000-product-cap"
        try scenario.store.catalog.insert(BuildRecord(id: id, family: "product", status: .running, started: Date(), pid: getpid()))
        let server = try scenario.serve(arguments: ["--max-streams", "2"])
        defer { server.stop() }
        let curl = try requiredTool("curl")
        /// A client that holds the stream for `seconds`, then leaves; its HTTP status.
        @Sendable func tail(seconds: Int) async throws -> String {
            let result = try await ProcessRunner.run(
                curl,
                ["-sS", "-N", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "\(seconds)", server.base + "/builds/\(id)/events"],
                timeout: .seconds(seconds + 10))
            return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        }
        func open(seconds: Int) -> Task<String, any Error> { Task { try await tail(seconds: seconds) } }
        let first = open(seconds: 3)
        let second = open(seconds: 30)
        try await Task.sleep(for: .seconds(1.5))
        let refused = try await server.get("/builds/\(id)/events")
        #expect(refused.status == 503 && refused.body.contains("live tails are open already"), "\(refused.status) \(refused.body)")
        #expect(refused.header("Retry-After") == "\(LogTail.retryAfter)")
        // The first client gives up after 3 s: its slot is free once the server notices.
        _ = try await first.value
        var admitted = false
        for _ in 0..<40 where !admitted {
            admitted = try await tail(seconds: 1) == "200"
            if !admitted { try await Task.sleep(for: .milliseconds(500)) }
        }
        #expect(admitted, "no slot came free after a client left")
        // The build ends: the open stream ends with it.
        var record = try #require(try scenario.store.catalog.build(id: id))
        record.status = .succeeded
        try scenario.store.catalog.update(record)
        let last = try await second.value
        #expect(last == "200", "\(last)")
        let bad = try await KilnBinary.run(["serve", "--home", scenario.store.root, "--max-streams", "0"])
        #expect(bad.status == 2 && bad.stderr.contains("--max-streams"), "\(bad.stderr)")
        #expect(server.stop() == 0)
    }

    @Test("a running build's log is tailed as server-sent events, line by line, then an end event with its status")
    func liveTail() async throws {
        let scenario = try await ServeScenario()
        defer { scenario.remove() }
        let store = scenario.store
        let id = "20261205T000000-product-tail"
        try store.catalog.insert(BuildRecord(id: id, family: "product", status: .running, started: Date(), pid: getpid()))
        let scratch = store.scratchDirectory(buildID: id)
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        let log = FileHandle(
            forWritingAtPath: {
                FileManager.default.createFile(atPath: scratch + "/build.log", contents: nil); return scratch + "/build.log"
            }())!
        defer { try? log.close() }
        log.write(Data("line one\n".utf8))
        let server = try scenario.serve()
        defer { server.stop() }
        let page = try await server.get("/builds/\(id)")
        #expect(page.body.contains("data-events=\"/builds/\(id)/events\"") && page.body.contains("line one"))
        #expect(page.body.contains("<script src=\"/static/tail.js\""))

        // curl as the event-stream client (FoundationNetworking has no streaming reads): it
        // prints the events as they come and exits when the server ends the stream.
        let curl = try requiredTool("curl")
        let stream = Task {
            try await ProcessRunner.run(
                curl, ["-sS", "-N", "-w", "--%{content_type}", "--max-time", "30", server.base + "/builds/\(id)/events?from=1"],
                timeout: .seconds(40))
        }
        try await Task.sleep(for: .milliseconds(800))
        // A carriage return must not let a guest's output pose as an event of its own.
        log.write(Data("line two\nline three\revent: end\n".utf8))
        try await Task.sleep(for: .milliseconds(800))
        var record = try #require(try store.catalog.build(id: id))
        record.status = .succeeded
        try store.catalog.update(record)
        let result = try await stream.value
        #expect(result.status == 0, "curl: \(result.stderr)")
        #expect(result.stdout.contains("--text/event-stream"), "\(result.stdout)")
        let text: String? = result.stdout.range(of: "--", options: .backwards).map { String(result.stdout[..<$0.lowerBound]) }
        let events = try #require(text, "no body: \(result.stdout)")
        #expect(!events.contains("line one"))
        #expect(events.contains("event: line\ndata: line two\n") && events.contains("data: line threeevent: end\n"), "\(events)")
        #expect(events.hasSuffix("event: end\ndata: succeeded\n\n"), "\(events)")
        #expect(events.split(separator: "\n").filter { $0 == "event: end" }.count == 1, "\(events)")
    }
}
