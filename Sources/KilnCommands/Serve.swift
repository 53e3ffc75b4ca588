import ArgumentParser
import Foundation
import KilnCore
import KilnServe

struct Serve: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Serve the catalog as web pages and a JSON API (read-only).",
        discussion: """
            Families with their heads, state counts and channels; a family's versions, a page at a \
            time; an image with its parent chain, build key inputs and why it was rebuilt, \
            provenance, packages, signature and tests; the lineage of the whole store as a graph \
            with stale images marked; channel history; build logs with the failed step marked, and \
            a live tail of builds running on this machine. The same data as JSON under /api/, \
            described at /api/openapi.json. See docs/serve.md.

            On 127.0.0.1 anyone on this machine may read. To listen beyond it, set \
            KILN_SERVE_TOKEN (16 characters or more): requests then need `Authorization: Bearer \
            TOKEN`, and browsers sign in once with a form. Ctrl-C stops the server.
            """)

    @Option(
        help: ArgumentHelp(
            "Address and port: 127.0.0.1:8080, [::1]:8080, 0.0.0.0:8080 (needs KILN_SERVE_TOKEN); port 0 picks a free one.",
            valueName: "host:port"))
    var listen = "127.0.0.1:8080"

    @Option(
        help: ArgumentHelp(
            "Live tails of running builds open at once; past it a new one is answered 503 (each polls its log).",
            valueName: "n"))
    var maxStreams = KilnServer.defaultMaxStreams

    @OptionGroup var store: StoreOptions

    func run() async throws {
        let address = try ListenAddress(parsing: listen)
        let server = try KilnServer(
            store: try store.open(), address: address, token: ProcessInfo.processInfo.environment["KILN_SERVE_TOKEN"],
            maxStreams: maxStreams)
        try await server.run { bound in
            // On standard output, so a script (or a test) that asked for port 0 learns the port.
            try? FileHandle.standardOutput.write(contentsOf: Data("kiln serve: listening on http://\(bound)/ (Ctrl-C stops)\n".utf8))
        }
    }
}
