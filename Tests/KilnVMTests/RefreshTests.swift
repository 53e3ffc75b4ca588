import Foundation
import KilnCore
import Testing

/// A small apt repository of real packages, made with dpkg-deb and dpkg-scanpackages, served
/// over loopback HTTP; unsigned (the templates say `trusted: true`).
final class LocalAptRepository {
    let root: String
    let suite = "kiln"
    private let server = Process()
    private(set) var url = ""

    init() throws {
        root = NSTemporaryDirectory() + "kiln-apt-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: root + "/pool", withIntermediateDirectories: true)
    }

    /// Adds `kiln-hello` at `version` (it installs /usr/share/kiln-hello/version) and publishes
    /// new indexes, keeping the older versions in the pool as a real archive does.
    func publish(helloVersion version: String) async throws {
        let tree = root + "/build-\(version)"
        let fm = FileManager.default
        try fm.createDirectory(atPath: tree + "/DEBIAN", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: tree + "/usr/share/kiln-hello", withIntermediateDirectories: true)
        try """
        Package: kiln-hello
        Version: \(version)
        Architecture: all
        Maintainer: kiln tests <tests@example.invalid>
        Description: a package kiln's refresh test upgrades

        """.write(toFile: tree + "/DEBIAN/control", atomically: true, encoding: .utf8)
        try "\(version)\n".write(toFile: tree + "/usr/share/kiln-hello/version", atomically: true, encoding: .utf8)
        try await ProcessRunner.check("dpkg-deb", ["--root-owner-group", "--build", tree, root + "/pool/kiln-hello_\(version)_all.deb"])
        try fm.removeItem(atPath: tree)
        let dists = root + "/dists/\(suite)"
        let binary = dists + "/main/binary-amd64"
        try fm.createDirectory(atPath: binary, withIntermediateDirectories: true)
        let scan = try await ProcessRunner.run("sh", ["-c", "cd \"$0\" && dpkg-scanpackages --multiversion pool /dev/null", root])
        try #require(scan.status == 0, "dpkg-scanpackages: \(scan.stderr)")
        try scan.stdout.write(toFile: binary + "/Packages", atomically: true, encoding: .utf8)
        try? fm.removeItem(atPath: binary + "/Packages.xz")
        try await ProcessRunner.check("xz", ["-k", binary + "/Packages"])
        var release = """
            Origin: kiln-test
            Suite: \(suite)
            Codename: \(suite)
            Date: \(Date().formatted(.iso8601))
            Architectures: amd64
            Components: main
            SHA256:

            """
        for name in ["Packages", "Packages.xz"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: binary + "/" + name))
            release += " \(Hashing.sha256Hex(data)) \(data.count) main/binary-amd64/\(name)\n"
        }
        try release.write(toFile: dists + "/Release", atomically: true, encoding: .utf8)
    }

    func serve() throws {
        let portFile = root + "/.port"
        server.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        server.arguments = [
            "python3", "-c",
            """
            import http.server, functools, sys
            handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[1])
            server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
            open(sys.argv[2], "w").write(str(server.server_address[1]))
            server.serve_forever()
            """,
            root, portFile,
        ]
        server.standardError = FileHandle.nullDevice
        try server.run()
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: portFile) && Date() < deadline { usleep(20_000) }
        usleep(50_000)
        url = "http://127.0.0.1:\((try? String(contentsOfFile: portFile, encoding: .utf8)) ?? "0")/"
    }

    func stop() {
        guard server.isRunning else { return }
        // SIGKILL: Foundation's Process starts children with most signals blocked.
        kill(server.processIdentifier, SIGKILL)
        server.waitUntilExit()
    }

    deinit {
        stop()
        try? FileManager.default.removeItem(atPath: root)
    }
}

// Part of the serialized VM suite: its builds share the store with the kill-point tests,
// whose `kiln verify` would see this test's blobs between their seal and their catalog entry.
extension VMBuildTests {
    @Test(
        "refresh builds nothing while packages are current; after the repository publishes a newer version it rebuilds the base, then its child, moves both families and rotates the old versions"
    )
    func refreshesAfterAnUpdate() async throws {
        let store = SharedStore.shared
        // Its own base: a refresh rebuilds from the bootstrap, which the shared example base must not.
        let dir = NSTemporaryDirectory() + "kiln-refresh-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let repository = try LocalAptRepository()
        try await repository.publish(helloVersion: "1.0")
        try repository.serve()
        defer { repository.stop() }
        try """
        image: rf-base
        from:
          debootstrap:
            suite: bookworm
            include: [kiln-hello]
            updates:
              - {suite: kiln, mirror: "${var.repo}", trusted: true}
        vars:
          repo: {}
        lifecycle: {keep: 1}
        provision:
          - shell: cp /usr/share/kiln-hello/version /etc/rf-base-saw
        """.write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        try """
        image: rf-app
        from: {image: rf-base}
        lifecycle: {keep: 1}
        provision:
          - shell: cp /usr/share/kiln-hello/version /etc/rf-app-saw
        """.write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        let repo = ["--var", "repo=" + repository.url]

        let first = try await store.kiln(["build", dir] + repo)
        try #require(first.status == 0, "first build failed:\n\(first.stderr.suffix(3000))")
        let packages = try await store.kiln(["inspect", "rf-base", "--packages"])
        #expect(packages.stdout.contains("kiln-hello\t1.0\tall\t"))
        #expect(packages.stdout.contains("openssh-server\t"))

        // Current: the check says so, and a refresh builds nothing.
        let current = try await store.kiln(["refresh", dir, "--check"] + repo)
        #expect(current.status == 0, "\(current.stdout)\(current.stderr)")
        #expect(current.stdout.contains("every image is current"))
        let nothing = try await store.kiln(["refresh", dir] + repo)
        #expect(nothing.status == 0 && !nothing.stdout.contains("built "), "\(nothing.stdout)\(nothing.stderr)")
        let oldBase = try await store.image("rf-base")["name"] as? String
        let oldApp = try await store.image("rf-app")["name"] as? String

        try await repository.publish(helloVersion: "1.1")
        // kiln build keeps the base pinned to the repository state it was made from...
        let plan = try await store.kiln(["plan", dir] + repo)
        #expect(plan.status == 0 && !plan.stdout.contains(": build"), "\(plan.stdout)\(plan.stderr)")
        // ...and refresh sees the update without booting anything.
        let check = try await store.kiln(["refresh", dir, "--check"] + repo)
        #expect(check.status == 10, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("kiln-hello 1.0 -> 1.1"))
        #expect(check.stdout.contains("would rebuild: rf-base, rf-app"))

        let refresh = try await store.kiln(["refresh", dir] + repo)
        try #require(refresh.status == 0, "refresh failed:\n\(refresh.stdout)\n\(refresh.stderr.suffix(3000))")
        let out = refresh.stdout
        let builtBase = try #require(out.range(of: "built rf-base-"))
        let builtApp = try #require(out.range(of: "built rf-app-"))
        #expect(builtBase.lowerBound < builtApp.lowerBound)
        #expect(out.contains("rotated \(oldBase ?? "?"): READY -> DEPRECATED"))
        #expect(out.contains("rotated \(oldApp ?? "?"): READY -> DEPRECATED"))

        let base = try await store.image("rf-base")
        let app = try await store.image("rf-app")
        #expect(base["name"] as? String != oldBase)
        #expect(app["parent"] as? String == base["name"] as? String)
        let updated = try await store.kiln(["inspect", "rf-base", "--packages"])
        #expect(updated.stdout.contains("kiln-hello\t1.1\tall\t"))
        let flat = try await FlatDisk(of: try #require(app["disk"] as? String))
        defer { flat.remove() }
        #expect(try await flat.cat("/etc/rf-app-saw") == "1.1\n")
        #expect(try await flat.cat("/etc/rf-base-saw") == "1.1\n")
        let after = try await store.kiln(["refresh", dir, "--check"] + repo)
        #expect(after.status == 0, "\(after.stdout)\(after.stderr)")

        // The base gets a test that the next version fails: the refresh rebuilds the base, its
        // test boot fails, and no family moves and nothing rotates (docs/testing.md).
        try await repository.publish(helloVersion: "1.2")
        let baseTemplate = try String(contentsOfFile: dir + "/base.yaml", encoding: .utf8)
        try
            (baseTemplate + """

                test:
                  steps:
                    - name: the vetted version
                      shell: test "$(cat /usr/share/kiln-hello/version)" != 1.2
                """).write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        let failing = try await store.kiln(["refresh", dir] + repo)
        #expect(failing.status == 1, "\(failing.stdout)\(failing.stderr.suffix(3000))")
        #expect(failing.stderr.contains("failed at test[0] the vetted version"), "\(failing.stderr.suffix(3000))")
        #expect(!failing.stdout.contains("rotated "), "\(failing.stdout)")
        #expect(try await store.image("rf-base")["name"] as? String == base["name"] as? String)
        #expect(try await store.image("rf-app")["name"] as? String == app["name"] as? String)
        let listing = try await store.kiln(["images", "--family", "rf-base", "--json"])
        let bases = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
        #expect(bases.last?["state"] as? String == "FAILED")
        #expect(bases.filter { $0["state"] as? String == "READY" }.map { $0["name"] as? String } == [base["name"] as? String])
        try baseTemplate.write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)

        // An unreachable repository: a clear error, nothing built or rotated.
        repository.stop()
        let images = try await store.kiln(["images", "--json"]).stdout
        let unreachable = try await store.kiln(["refresh", dir] + repo)
        #expect(unreachable.status == 1)
        #expect(unreachable.stderr.contains(repository.url), "\(unreachable.stderr)")
        #expect(try await store.kiln(["images", "--json"]).stdout == images)
    }
}
