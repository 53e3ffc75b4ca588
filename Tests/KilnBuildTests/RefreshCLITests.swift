import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTemplates
import Testing

@testable import KilnBuild

/// `kiln refresh` against a real Debian-format repository on loopback HTTP, with images whose
/// package manifests are written into the catalog as a build records them. Nothing here boots
/// a VM: the check never does, and these cases build nothing (Tests/KilnVMTests/RefreshTests
/// covers the rebuild).
@Suite("kiln refresh: checking images against their repositories (no VM)", .serialized)
struct RefreshCLITests {
    static let basePackages: [AptRepoFixture.Package] = [
        ("base-files", "12.4+deb12u7", "amd64"), ("libssl3", "3.0.14-1~deb12u2", "amd64"), ("tzdata", "2024a-0+deb12u1", "all"),
    ]

    /// A template directory (base on the repository, app on the base) and a store holding one
    /// image of each, their manifests at the repository's versions.
    final class Setup {
        let dir = NSTemporaryDirectory() + "kiln-refresh-" + UUID().uuidString
        var home: String { dir + "/home" }
        let names: (base: String, app: String)

        init(repository: String) throws {
            try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
            try """
            image: base
            from:
              debootstrap:
                suite: bookworm
                mirror: "${var.repo}"
                \(repository)
            vars:
              repo: {}
            """.write(toFile: dir + "/images/base.yaml", atomically: true, encoding: .utf8)
            try "image: app\nfrom: {image: base}\n".write(toFile: dir + "/images/app.yaml", atomically: true, encoding: .utf8)
            let store = try Store(root: dir + "/home")
            func manifest(_ packages: [AptRepoFixture.Package]) -> PackageManifest {
                PackageManifest(
                    packages.map {
                        InstalledPackage(
                            name: $0.name, version: $0.version, architecture: $0.architecture, source: $0.name, sourceVersion: $0.version)
                    })
            }
            let base = try store.catalog.commit(
                ImageDraft(
                    family: "base", digest: "d1", parent: nil, labels: [:], description: nil, templateHash: "t", size: 1,
                    log: "logs/x.tar.zst", buildID: "b1", sourceKind: "debootstrap", packages: manifest(RefreshCLITests.basePackages)))
            let app = try store.catalog.commit(
                ImageDraft(
                    family: "app", digest: "d2", parent: base.name, labels: [:], description: nil, templateHash: "t", size: 1,
                    log: "logs/x.tar.zst", buildID: "b2", sourceKind: "image",
                    packages: manifest(RefreshCLITests.basePackages + [("nginx-light", "1.22.1-9", "amd64")])))
            names = (base.name, app.name)
        }

        func kiln(_ arguments: [String], repo: String) async throws -> ProcessResult {
            try await CLI.kiln(arguments + ["--var", "repo=" + repo, "--home", home])
        }

        func images() async throws -> String { try await CLI.kiln(["images", "--json", "--home", home]).stdout }

        deinit { try? FileManager.default.removeItem(atPath: dir) }
    }

    @Test(
        "current packages: --check exits 0 and refresh builds nothing; a newer version: exit 10 naming the package and what is rebuilt"
    )
    func currentThenUpdated() async throws {
        let repository = try await AptRepoFixture(Self.basePackages + [("nginx-light", "1.22.1-9", "amd64")], signed: false)
        defer { repository.remove() }
        let server = try repository.serve()
        defer { _ = server.stop() }
        let setup = try Setup(repository: "trusted: true")
        let url = repository.url(server)
        let before = try await setup.images()

        let check = try await setup.kiln(["refresh", setup.dir + "/images", "--check"], repo: url)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("bookworm (4 packages, \(url))"))
        #expect(check.stdout.contains("base (\(setup.names.base)): current (3 packages)"))
        #expect(check.stdout.contains("app (\(setup.names.app)): current (4 packages)"))
        #expect(check.stdout.contains("every image is current"))
        let refresh = try await setup.kiln(["refresh", setup.dir + "/images"], repo: url)
        #expect(refresh.status == 0 && refresh.stdout.contains("nothing to rebuild"), "\(refresh.stdout)\(refresh.stderr)")
        #expect(try await setup.images() == before)

        // A security update of a package only the layer has: the base is rebuilt, then the layer.
        try await repository.add([("nginx-light", "1.22.1-9+deb12u1", "amd64")])
        let updated = try await setup.kiln(["refresh", setup.dir + "/images", "--check"], repo: url)
        #expect(updated.status == 10, "\(updated.stdout)\(updated.stderr)")
        #expect(updated.stdout.contains("app (\(setup.names.app)): 1 update(s): nginx-light 1.22.1-9 -> 1.22.1-9+deb12u1"))
        #expect(updated.stdout.contains("base (\(setup.names.base)): current (3 packages), rebuilt: images built on it have updates"))
        #expect(updated.stdout.contains("would rebuild: base, app"))
        // An older version in the repository is not an update (dpkg's ordering: ~ sorts first).
        try await repository.add([("libssl3", "3.0.14-1~deb12u1", "amd64"), ("tzdata", "2024a-0+deb12u1~bpo", "all")])
        let older = try await setup.kiln(["refresh", setup.dir + "/images", "--check"], repo: url)
        #expect(older.stdout.contains("base (\(setup.names.base)): current (3 packages)"))
        #expect(try await setup.images() == before)
    }

    @Test("an index whose bytes do not match the Release file, or a repository that does not answer: a clear error, nothing changed")
    func brokenRepository() async throws {
        let repository = try await AptRepoFixture(Self.basePackages, signed: false)
        defer { repository.remove() }
        let server = try repository.serve()
        let setup = try Setup(repository: "trusted: true")
        let url = repository.url(server)
        let before = try await setup.images()
        // Served bytes that differ from what the Release file lists, as a mirror caught half way through a sync.
        try await repository.add([("libssl3", "3.0.15-1~deb12u1", "amd64")])
        try Data(repeating: 0x41, count: 512).write(to: URL(fileURLWithPath: repository.indexDirectory + "/Packages.xz"))
        try Data(repeating: 0x41, count: 512).write(to: URL(fileURLWithPath: repository.indexDirectory + "/Packages"))
        let mismatch = try await setup.kiln(["refresh", setup.dir + "/images"], repo: url)
        #expect(mismatch.status == 1, "\(mismatch.stdout)\(mismatch.stderr)")
        #expect(mismatch.stderr.contains("SHA-256"), "\(mismatch.stderr)")
        #expect(mismatch.stderr.contains(url + "dists/bookworm/main/binary-amd64/Packages"), "\(mismatch.stderr)")
        #expect(!mismatch.stdout.contains("built "))

        _ = server.stop()
        let unreachable = try await setup.kiln(["refresh", setup.dir + "/images", "--check"], repo: url)
        #expect(unreachable.status == 1, "\(unreachable.stdout)\(unreachable.stderr)")
        #expect(unreachable.stderr.contains(url + "dists/bookworm/"), "\(unreachable.stderr)")
        #expect(try await setup.images() == before)
    }

    @Test("a signed repository is checked against the template's signed_by keyring; another key's signature is refused")
    func signedRepository() async throws {
        let repository = try await AptRepoFixture(Self.basePackages + [("nginx-light", "1.22.1-9", "amd64")], signed: true)
        defer { repository.remove() }
        let server = try repository.serve()
        defer { _ = server.stop() }
        let url = repository.url(server)
        let setup = try Setup(repository: "signed_by: \(try #require(repository.keyring))")
        let check = try await setup.kiln(["refresh", setup.dir + "/images", "--check"], repo: url)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("every image is current"))

        let other = try await AptRepoFixture.otherKeyring(in: repository.directory)
        let wrongKey = try Setup(repository: "signed_by: \(other)")
        let refused = try await wrongKey.kiln(["refresh", wrongKey.dir + "/images", "--check"], repo: url)
        #expect(refused.status == 1, "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stderr.contains("signature"), "\(refused.stderr)")
    }
}

@Suite("Package manifests and the repositories' state in build keys")
struct PackageStateTests {
    @Test("dpkg-query's output becomes a manifest of installed packages; a missing source means the package itself")
    func manifestFromDpkgQuery() {
        let output = """
            installed\tlibssl3\t3.0.14-1~deb12u2\tamd64\topenssl\t3.0.14-1~deb12u2
            installed\tless\t590-2.1~deb12u2\tamd64\t\t
            config-files\told-thing\t1.0\tamd64\t\t
            not-installed\tgone\t\tamd64\t\t

            """
        let manifest = PackageManifest(dpkgQueryOutput: output)
        #expect(
            manifest.packages == [
                InstalledPackage(
                    name: "less", version: "590-2.1~deb12u2", architecture: "amd64", source: "less", sourceVersion: "590-2.1~deb12u2"),
                InstalledPackage(
                    name: "libssl3", version: "3.0.14-1~deb12u2", architecture: "amd64", source: "openssl",
                    sourceVersion: "3.0.14-1~deb12u2"),
            ])
        #expect(PackageManifest(tsv: manifest.tsv) == manifest)
    }

    @Test(
        "a base stays pinned to the repository state its newest image was made from while that source disk is cached; a changed recipe or refresh takes the current state"
    )
    func pinnedReleaseState() async throws {
        let repository = try await AptRepoFixture(RefreshCLITests.basePackages, signed: false)
        defer { repository.remove() }
        let dir = repository.directory + "/images"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        func template(include: String) throws -> Template {
            try """
            image: base
            from: {debootstrap: {suite: bookworm, mirror: "file://\(repository.root)", trusted: true, include: [\(include)]}}
            """.write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
            return try #require(try TemplateLoader(environment: [:]).load(path: dir).template(family: "base"))
        }
        let base = try template(include: "less")
        let current = try await SourceDisk.identity(of: base)
        let release = try #require(current.fields["source.release"])
        #expect(release == Hashing.sha256Hex(try Data(contentsOf: URL(fileURLWithPath: repository.suiteDirectory + "/Release"))))
        var previous = KeyInputs(current.fields)
        previous.entries["source.release"] = "state-when-built"
        previous.entries["var.x"] = "not a source input"

        let pinned = try await SourceDisk.identity(of: base, pinnedTo: previous) { _ in true }
        #expect(pinned.fields["source.release"] == "state-when-built")
        let uncached = try await SourceDisk.identity(of: base, pinnedTo: previous) { _ in false }
        #expect(uncached.fields["source.release"] == release)
        let changed = try await SourceDisk.identity(of: try template(include: "less, curl"), pinnedTo: previous) { _ in true }
        #expect(changed.fields["source.release"] == release)
    }
}
