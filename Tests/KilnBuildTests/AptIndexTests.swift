import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnBuild
@testable import KilnProviders

@Suite("Debian version ordering (dpkg's algorithm)")
struct AptIndexVersionTests {
    @Test(
        "known pairs compare as dpkg orders them",
        arguments: [
            ("1.0", "1.0", 0),
            ("1.0", "1.1", -1),
            ("1.10", "1.9", 1),
            ("1.0", "1.0-0", 0),
            ("1.0-1", "1.0-2", -1),
            ("1.0-10", "1.0-9", 1),
            ("1.0~rc1", "1.0", -1),
            ("1.0~rc1", "1.0~rc2", -1),
            ("1.0~~", "1.0~", -1),
            ("1.0~", "1.0", -1),
            ("1.0", "1.0+b1", -1),
            ("1.0+b1", "1.0.1", -1),
            ("1.0a", "1.0+", -1),
            ("1.0a", "1.0.", -1),
            ("1.0", "1.0a", -1),
            ("1:0.1", "2.0", 1),
            ("1:1.0", "2:0.1", -1),
            ("0:1.0", "1.0", 0),
            ("2.30-1", "2.30-1+deb12u1", -1),
            ("2.36-9+deb12u3", "2.36-9+deb12u10", -1),
            ("7.88.1-10+deb12u5", "7.88.1-10+deb12u12", -1),
            ("1.2.3-1~bpo12+1", "1.2.3-1", -1),
            ("1.0-1", "1.0-1~deb12u1", 1),
            ("1.2-3-4", "1.2-3-5", -1),
            ("1.2-3-4", "1.2-4", 1),
            ("001", "1", 0),
            ("1.002", "1.2", 0),
            ("1.0-a", "1.0-b", -1),
            ("1.0.0", "1.0", 1),
            ("6.1.0-18", "6.1.0-9", 1),
            ("2:1.0", "10:0.1", -1),
        ])
    func table(_ a: String, _ b: String, _ expected: Int) {
        #expect(DebianVersion.compare(a, b) == expected, "\(a) vs \(b)")
        #expect(DebianVersion.compare(b, a) == -expected, "\(b) vs \(a)")
    }

    @Test("400 random pairs compare as dpkg --compare-versions says")
    func dpkgAgrees() async throws {
        var random = SeededGenerator(state: 0x6b69_6c6e)
        var pairs: [(String, String)] = []
        for n in 0..<400 {
            let a = Self.version(&random)
            pairs.append((a, n % 2 == 0 ? Self.version(&random) : Self.mutate(a, &random)))
        }
        // One shell for all pairs: a process per dpkg call from Swift would be much slower.
        let script = """
            while read -r a b; do
              if dpkg --compare-versions "$a" lt "$b"; then echo -1
              elif dpkg --compare-versions "$a" eq "$b"; then echo 0
              else echo 1; fi
            done
            """
        let input = pairs.map { "\($0.0) \($0.1)\n" }.joined()
        let result = try await ProcessRunner.check("/bin/sh", ["-c", script], input: .data(Data(input.utf8)))
        #expect(!result.stderr.contains("warning"), "dpkg found a generated version invalid: \(result.stderr)")
        let answers = result.stdout.split(separator: "\n").map { Int($0)! }
        try #require(answers.count == pairs.count)
        var disagreements: [String] = []
        for (pair, answer) in zip(pairs, answers) where DebianVersion.compare(pair.0, pair.1) != answer {
            disagreements.append("\(pair.0) vs \(pair.1): dpkg \(answer), kiln \(DebianVersion.compare(pair.0, pair.1))")
        }
        #expect(disagreements.isEmpty, "\(disagreements.joined(separator: "\n"))")
        // The generator must produce all three outcomes, or the check proves little.
        #expect(Set(answers) == [-1, 0, 1])
    }

    /// A valid Debian version: optional epoch, upstream starting with a digit, optional revision.
    static func version(_ random: inout SeededGenerator) -> String {
        let upstreamCharacters = Array("0123456789012345.....++~~abzXY")
        let revisionCharacters = Array("0123456789.+~bdeu")
        var version = random.next() % 4 == 0 ? "\(random.next() % 3):" : ""
        version += String(random.next() % 10)
        for _ in 0..<(random.next() % 7) { version.append(upstreamCharacters[Int(random.next() % UInt64(upstreamCharacters.count))]) }
        if random.next() % 2 == 0 {
            if random.next() % 5 == 0 { version += "-" + String(random.next() % 3) }
            version += "-"
            for _ in 0...(random.next() % 4) { version.append(revisionCharacters[Int(random.next() % UInt64(revisionCharacters.count))]) }
        }
        return version
    }

    /// A version near `a`, where the interesting comparisons are.
    static func mutate(_ a: String, _ random: inout SeededGenerator) -> String {
        switch random.next() % 6 {
        case 0: return a + "~rc1"
        case 1: return a + "+b1"
        case 2: return a + ".0"
        case 3: return "0" + a.replacingOccurrences(of: ":", with: "")
        case 4: return a.contains("-") ? a + "~deb12u1" : a + "-1"
        default:
            var characters = Array(a)
            let digits = characters.indices.filter { characters[$0].isNumber }
            if let index = digits.randomElement(using: &random) { characters[index] = Character(String(random.next() % 10)) }
            return String(characters)
        }
    }
}

@Suite("Packages index parsing")
struct AptIndexParseTests {
    @Test("the newest version per name and architecture is kept; continuation lines and other fields are ignored")
    func parse() throws {
        let text = """
            Package: bash
            Version: 5.2.15-2
            Architecture: amd64
            Description: GNU Bourne Again SHell
             Version: 99:99
             Package: fake
            \r
            # a comment line
            package: bash
            VERSION: 5.2.15-2+b7
            Architecture:   amd64\t
            Homepage: http://tiswww.case.edu/php/chet/bash/bashtop.html

            Package: bash
            Version: 5.2.15-2+b2
            Architecture: amd64
            \t
            Package: tzdata
            Version: 2024a-0+deb12u1
            Architecture: all

            Package: bash
            Version: 5.2.15-2
            Architecture: arm64
            """
        let index = try PackageIndex.parse(Data(text.utf8))
        #expect(index.count == 3)
        #expect(index.newest("bash", architecture: "amd64") == "5.2.15-2+b7")
        #expect(index.newest("bash", architecture: "arm64") == "5.2.15-2")
        #expect(index.newest("tzdata", architecture: "amd64") == "2024a-0+deb12u1")
        #expect(index.newest("tzdata", architecture: "all") == "2024a-0+deb12u1")
        #expect(index.newest("fake", architecture: "amd64") == nil)
        #expect(index.newest("bash", architecture: "riscv64") == nil)
    }

    @Test("an empty file is an empty index")
    func empty() throws {
        #expect(try PackageIndex.parse(Data()).count == 0)
        #expect(try PackageIndex.parse(Data("\n\n".utf8)).count == 0)
    }

    @Test("a stanza without a Version is an error that names its line")
    func missingVersion() {
        let text = "Package: a\nVersion: 1\nArchitecture: all\n\nPackage: b\nArchitecture: all\n"
        #expect {
            try PackageIndex.parse(Data(text.utf8))
        } throws: { error in
            "\(error)".contains("line 5: stanza has no Version")
        }
    }

    @Test("newest prefers an Architecture: all package when it is newer, and merge keeps the newer version")
    func newestAndMerge() throws {
        var index = try PackageIndex.parse(Data("Package: p\nVersion: 1.0-1\nArchitecture: amd64\n".utf8))
        let other = try PackageIndex.parse(
            Data("Package: p\nVersion: 1.0-2\nArchitecture: all\n\nPackage: p\nVersion: 0.9\nArchitecture: amd64\n".utf8))
        index.merge(other)
        #expect(index.count == 2)
        #expect(index.newest("p", architecture: "amd64") == "1.0-2")
        var older = try PackageIndex.parse(Data("Package: p\nVersion: 1:0.1\nArchitecture: amd64\n".utf8))
        older.merge(index)
        #expect(older.newest("p", architecture: "amd64") == "1:0.1")
    }

    @Test("the cache format round-trips an index, and a truncated cache file is refused")
    func cacheRoundTrip() throws {
        let index = try PackageIndex.parse(
            Data("Package: a\nVersion: 1:2.0~rc1-3\nArchitecture: amd64\n\nPackage: b\nVersion: 1\nArchitecture: all\n".utf8))
        let data = index.cacheData()
        #expect(PackageIndex.fromCache(data) == index)
        #expect(PackageIndex.fromCache(data.dropLast(3)) == nil)
        #expect(PackageIndex.fromCache(Data("garbage\n".utf8)) == nil)
    }

    @Test("the index cache drops what no check used for two weeks and keeps the rest")
    func cachePruned() throws {
        let dir = NSTemporaryDirectory() + "kiln-apt-cache-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["old.tsv", "recent.tsv", "other"] { FileManager.default.createFile(atPath: dir + "/" + name, contents: Data()) }
        let month = Date(timeIntervalSinceNow: -30 * 86_400)
        for name in ["old.tsv", "other"] {
            try FileManager.default.setAttributes([.modificationDate: month], ofItemAtPath: dir + "/" + name)
        }
        AptIndexFetcher(cacheDirectory: dir).pruneCache()
        #expect(try FileManager.default.contentsOfDirectory(atPath: dir).sorted() == ["other", "recent.tsv"])
    }
}

@Suite("Apt repository indexes over HTTP (loopback server, real gpg and xz)")
struct AptIndexFetchTests {
    static let base: [AptRepoFixture.Package] = [
        ("bash", "5.2.15-2+b2", "amd64"),
        ("libc6", "2.36-9+deb12u4", "amd64"),
        ("tzdata", "2024a-0+deb12u1", "all"),
    ]

    /// Replaces `repo`'s Packages.xz with another repository's (a newer bash), as an attacker
    /// would; returns its bytes. The Release file still names the real one.
    func plantForeignIndex(in repo: AptRepoFixture) async throws -> Data {
        let evil = try await AptRepoFixture([("bash", "99:1", "amd64")], signed: false)
        defer { evil.remove() }
        let evilIndex = try Data(contentsOf: URL(fileURLWithPath: evil.indexDirectory + "/Packages.xz"))
        try evilIndex.write(to: URL(fileURLWithPath: repo.indexDirectory + "/Packages.xz"))
        return evilIndex
    }

    /// The message of the error fetching `repo` (served over loopback) fails with.
    func fetchFailure(_ repo: AptRepoFixture) async throws -> String {
        let server = try repo.serve()
        defer { _ = server.stop() }
        return await failure {
            _ = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: repo.url(server)), architecture: "amd64")
        }
    }

    /// The message of the KilnError `body` throws; fails the test when it throws nothing.
    func failure(_ body: () async throws -> Void) async -> String {
        do {
            try await body()
            Issue.record("expected an error")
            return ""
        } catch let error as KilnError {
            #expect(error.code == .io)
            return error.message
        } catch {
            Issue.record("expected a KilnError, got \(error)")
            return ""
        }
    }

    @Test("an unsigned repository declared trusted is read over HTTP and the newest version found")
    func unsignedTrusted() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false)
        defer { repo.remove() }
        let server = try repo.serve()
        var stopped = false
        defer {
            if !stopped { _ = server.stop() }
        }
        try await repo.add([("bash", "5.2.15-2+b7", "amd64"), ("bash", "5.2.15-2+b3", "amd64")])
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: repo.url(server)), architecture: "amd64")
        #expect(suite.index.newest("bash", architecture: "amd64") == "5.2.15-2+b7")
        #expect(suite.index.newest("tzdata", architecture: "amd64") == "2024a-0+deb12u1")
        #expect(suite.index.count == 3)
        let release = try Data(contentsOf: URL(fileURLWithPath: repo.suiteDirectory + "/Release"))
        #expect(suite.releaseHash == Hashing.sha256Hex(release))
        let log = server.stop()
        stopped = true
        // InRelease is missing (404, unlogged), so Release is read instead.
        #expect(log.contains("GET /dists/bookworm/Release "))
        #expect(log.contains("GET /dists/bookworm/main/binary-amd64/Packages.xz "))
    }

    @Test("a signed repository verifies against its own keyring; the hash is the InRelease file's")
    func signed() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let server = try repo.serve()
        defer { _ = server.stop() }
        let fetcher = AptIndexFetcher(cacheDirectory: nil)
        let suite = try await fetcher.fetch(repo.source(mirror: repo.url(server)), architecture: "amd64")
        #expect(suite.index.newest("libc6", architecture: "amd64") == "2.36-9+deb12u4")
        let inRelease = try Data(contentsOf: URL(fileURLWithPath: repo.suiteDirectory + "/InRelease"))
        #expect(suite.releaseHash == Hashing.sha256Hex(inRelease))
        #expect(try await fetcher.releaseHash(repo.source(mirror: repo.url(server))) == suite.releaseHash)
    }

    @Test("an ASCII-armored keyring (signed-by=*.asc) verifies as its binary form does")
    func armoredKeyring() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        var source = repo.source(mirror: "file://" + repo.root)
        let armored = (repo.keyring! as NSString).deletingPathExtension + ".asc"
        #expect(try String(contentsOfFile: armored, encoding: .utf8).hasPrefix("-----BEGIN PGP PUBLIC KEY BLOCK-----"))
        source.signedBy = armored
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(source, architecture: "amd64")
        #expect(suite.index.count == 3)
    }

    @Test("a signed repository checked against another keyring fails with gpgv's message")
    func wrongKeyring() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let server = try repo.serve()
        defer { _ = server.stop() }
        var source = repo.source(mirror: repo.url(server))
        source.signedBy = try await AptRepoFixture.otherKeyring(in: repo.directory)
        let message = await failure { _ = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source) }
        #expect(message.contains("signature check of \(repo.url(server))dists/bookworm/InRelease failed: "))
        #expect(message.contains("No public key"))
    }

    @Test("an InRelease altered after signing fails the signature check")
    func tampered() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let path = repo.suiteDirectory + "/InRelease"
        let text = try String(contentsOfFile: path, encoding: .utf8)
        try text.replacingOccurrences(of: "Label: kiln-test", with: "Label: kiln-evil").write(
            toFile: path, atomically: true, encoding: .utf8)
        let message = try await fetchFailure(repo)
        #expect(message.contains("signature check of"))
        #expect(message.contains("BAD signature"))
    }

    @Test("unsigned text around the signed part of InRelease is never read: only what gpgv verified counts")
    func unsignedPrefix() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        // An attacker's index, announced by an unsigned paragraph in front of the real one.
        let evilIndex = try await plantForeignIndex(in: repo)
        let path = repo.suiteDirectory + "/InRelease"
        let signed = try String(contentsOfFile: path, encoding: .utf8)
        let forged = "Suite: bookworm\nSHA256:\n \(Hashing.sha256Hex(evilIndex)) \(evilIndex.count) main/binary-amd64/Packages.xz\n\n"
        try (forged + signed).write(toFile: path, atomically: true, encoding: .utf8)
        let message = try await fetchFailure(repo)
        #expect(message.contains("Packages.xz: SHA-256 is \(Hashing.sha256Hex(evilIndex)), Release says "))
    }

    @Test("two signed messages in one InRelease are refused, though the key signed both")
    func twoSignedMessages() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let evilIndex = try await plantForeignIndex(in: repo)
        // Any text the key once signed, replayed after the real InRelease.
        let other = repo.directory + "/other"
        try "SHA256:\n \(Hashing.sha256Hex(evilIndex)) \(evilIndex.count) main/binary-amd64/Packages.xz\n".write(
            toFile: other, atomically: true, encoding: .utf8)
        try await repo.clearsign(other, to: other + ".asc")
        let path = repo.suiteDirectory + "/InRelease"
        let joined = try String(contentsOfFile: path, encoding: .utf8) + String(contentsOfFile: other + ".asc", encoding: .utf8)
        try joined.write(toFile: path, atomically: true, encoding: .utf8)
        let message = await failure {
            _ = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: "file://" + repo.root), architecture: "amd64")
        }
        #expect(message.contains("signature check of file://\(repo.root)/dists/bookworm/InRelease failed: "))
    }

    @Test("a signed repository declared trusted is read without gpgv, from the text inside the signature")
    func signedButTrusted() async throws {
        let repo = try await AptRepoFixture(Self.base + [("bash", "5.2.15-2+b10", "amd64")], signed: true)
        defer { repo.remove() }
        var source = repo.source(mirror: "file://" + repo.root)
        source.trusted = true
        source.signedBy = repo.directory + "/no-such-keyring.gpg"
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(source, architecture: "amd64")
        #expect(suite.index.newest("bash", architecture: "amd64") == "5.2.15-2+b10")
    }

    @Test("where Release lists binary-all, 'all' packages are read from it too; an uncompressed index is read as is")
    func binaryAll() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false)
        defer { repo.remove() }
        let allDirectory = repo.suiteDirectory + "/main/binary-all"
        try FileManager.default.createDirectory(atPath: allDirectory, withIntermediateDirectories: true)
        let all = Data("Package: tzdata\nVersion: 2025b-0+deb12u1\nArchitecture: all\n".utf8)
        try all.write(to: URL(fileURLWithPath: allDirectory + "/Packages"))
        let releasePath = repo.suiteDirectory + "/Release"
        let release =
            try String(contentsOfFile: releasePath, encoding: .utf8)
            .replacingOccurrences(of: "Architectures: amd64", with: "Architectures: all amd64")
            + " \(Hashing.sha256Hex(all)) \(all.count) main/binary-all/Packages\n"
        try release.write(toFile: releasePath, atomically: true, encoding: .utf8)
        let source = repo.source(mirror: "file://" + repo.root)
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(source, architecture: "amd64")
        #expect(suite.index.newest("tzdata", architecture: "amd64") == "2025b-0+deb12u1")
        #expect(suite.index.newest("bash", architecture: "amd64") == "5.2.15-2+b2")
        // Debian's own Release says its binary-ARCH indexes already carry them: binary-all is not read.
        try (release.replacingOccurrences(of: "Components: main", with: "Components: main\nNo-Support-for-Architecture-all: Packages"))
            .write(toFile: releasePath, atomically: true, encoding: .utf8)
        let debianStyle = try await AptIndexFetcher(cacheDirectory: nil).fetch(source, architecture: "amd64")
        #expect(debianStyle.index.newest("tzdata", architecture: "amd64") == "2024a-0+deb12u1")
    }

    @Test("a repository without InRelease is refused unless declared trusted")
    func unsignedNotTrusted() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false)
        defer { repo.remove() }
        let server = try repo.serve()
        defer { _ = server.stop() }
        var source = repo.source(mirror: repo.url(server))
        source.trusted = false
        let message = await failure { _ = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source) }
        #expect(message == "\(repo.url(server))dists/bookworm/InRelease: HTTP 404")
    }

    @Test("a Packages.xz whose bytes do not match Release fails naming the URL and both hashes")
    func hashMismatch() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false)
        defer { repo.remove() }
        let path = repo.indexDirectory + "/Packages.xz"
        var bytes = try Data(contentsOf: URL(fileURLWithPath: path))
        let listed = Hashing.sha256Hex(bytes)
        bytes[bytes.count / 2] ^= 0xFF
        try bytes.write(to: URL(fileURLWithPath: path))
        let message = try await fetchFailure(repo)
        #expect(message.hasPrefix("http://127.0.0.1:"))
        #expect(
            message.hasSuffix(
                "/dists/bookworm/main/binary-amd64/Packages.xz: SHA-256 is \(Hashing.sha256Hex(bytes)), Release says \(listed)"))
    }

    @Test("an architecture the Release file lists no index for is named in the error")
    func missingArchitecture() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false)
        defer { repo.remove() }
        let message = await failure {
            _ = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: "file://" + repo.root), architecture: "arm64")
        }
        #expect(message == "Release of bookworm lists no main/binary-arm64/Packages (Architectures: amd64; Components: main)")
    }

    @Test("a Release file past its Valid-Until is refused, as apt refuses it")
    func expired() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true, validUntil: Date().addingTimeInterval(-3600))
        defer { repo.remove() }
        let source = repo.source(mirror: "file://" + repo.root)
        let message = await failure { _ = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source) }
        #expect(message.contains("InRelease expired (Valid-Until: "))
        repo.validUntil = Date().addingTimeInterval(3600)
        try await repo.publish()
        _ = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source)
    }

    @Test("an unreachable mirror fails with 'cannot reach' and the URL")
    func unreachable() async throws {
        // A loopback port nothing listens on: bound, then released.
        let port = try QemuProvider.freeLoopbackPort()
        let source = AptSource(mirror: "http://127.0.0.1:\(port)/debian/", suite: "bookworm", trusted: true)
        let message = await failure { _ = try await AptIndexFetcher(cacheDirectory: nil).releaseHash(source) }
        #expect(message.hasPrefix("cannot reach http://127.0.0.1:\(port)/debian/dists/bookworm/InRelease: "))
    }

    @Test("with a cache, a second fetch of an unchanged repository reads only the Release file; a new index is read again")
    func cache() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let server = try repo.serve()
        var stopped = false
        defer {
            if !stopped { _ = server.stop() }
        }
        let fetcher = AptIndexFetcher(cacheDirectory: repo.directory + "/cache")
        let source = repo.source(mirror: repo.url(server))
        let first = try await fetcher.fetch(source, architecture: "amd64")
        let second = try await fetcher.fetch(source, architecture: "amd64")
        #expect(second.index == first.index)
        #expect(second.releaseHash == first.releaseHash)
        try await repo.add([("libc6", "2.36-9+deb12u7", "amd64")])
        let third = try await fetcher.fetch(source, architecture: "amd64")
        #expect(third.index.newest("libc6", architecture: "amd64") == "2.36-9+deb12u7")
        #expect(third.releaseHash != first.releaseHash)
        let log = server.stop()
        stopped = true
        let requests = log.split(separator: "\n").map { $0.split(separator: " ")[1] }
        #expect(requests.filter { $0 == "/dists/bookworm/InRelease" }.count == 3)
        #expect(requests.filter { $0 == "/dists/bookworm/main/binary-amd64/Packages.xz" }.count == 2, "\(log)")
        #expect(requests.count == 5, "\(log)")
    }

    @Test("with Acquire-By-Hash the index is read under its hash, so a mirror update cannot race the Release file")
    func byHash() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: false, byHash: true)
        defer { repo.remove() }
        let server = try repo.serve()
        var stopped = false
        defer {
            if !stopped { _ = server.stop() }
        }
        let xz = try Data(contentsOf: URL(fileURLWithPath: repo.indexDirectory + "/Packages.xz"))
        // The mirror has moved on: the canonical name now holds something else.
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: repo.indexDirectory + "/Packages.xz"))
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: repo.url(server)), architecture: "amd64")
        #expect(suite.index.newest("bash", architecture: "amd64") == "5.2.15-2+b2")
        let log = server.stop()
        stopped = true
        #expect(log.contains("GET /dists/bookworm/main/binary-amd64/by-hash/SHA256/\(Hashing.sha256Hex(xz)) "))
        #expect(!log.contains("binary-amd64/Packages.xz"))
    }

    @Test("a file:// mirror is read from disk")
    func fileMirror() async throws {
        let repo = try await AptRepoFixture(Self.base, signed: true)
        defer { repo.remove() }
        let suite = try await AptIndexFetcher(cacheDirectory: nil).fetch(repo.source(mirror: "file://" + repo.root), architecture: "amd64")
        #expect(suite.index.count == 3)
    }
}
