import Foundation
import KilnCore
import KilnModel

@testable import KilnBuild

/// A Debian-format apt repository in a temporary directory, made the way archive tools make
/// one: `dists/SUITE/main/binary-amd64/Packages` and `Packages.xz` (real xz), a `Release` that
/// lists their sizes and SHA-256, and, when signed, an `InRelease` clearsigned by a throwaway
/// ed25519 key (real gpg). Add packages and publish again to model a mirror update.
///
/// Every package goes into the amd64 index, "all" ones too, as Debian's indexes carry them.
final class AptRepoFixture {
    typealias Package = (name: String, version: String, architecture: String)

    /// Temporary directory holding everything; removed by `remove()`.
    let directory: String
    /// The repository itself: what a server serves or a file:// mirror names.
    let root: String
    let suite: String
    let signed: Bool
    /// The public key InRelease verifies against (signed repositories only); the same key
    /// ASCII-armored is next to it, named `.asc`.
    let keyring: String?
    private let gnupgHome: String?
    private(set) var packages: [Package]
    /// Written as the Release file's Valid-Until field when set.
    var validUntil: Date?
    /// Also publish each index under by-hash/SHA256/ and say `Acquire-By-Hash: yes`.
    var byHash: Bool

    init(
        _ packages: [Package], signed: Bool, suite: String = "bookworm", byHash: Bool = false, validUntil: Date? = nil
    ) async throws {
        directory = NSTemporaryDirectory() + "kiln-apt-" + UUID().uuidString.prefix(8)
        root = directory + "/www"
        self.suite = suite
        self.signed = signed
        self.packages = packages
        self.byHash = byHash
        self.validUntil = validUntil
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        if signed {
            let home = directory + "/gnupg"
            keyring = try await Self.makeKey(home: home, exportTo: directory + "/key.gpg")
            gnupgHome = home
        } else {
            keyring = nil
            gnupgHome = nil
        }
        try await publish()
    }

    /// A keyring holding a fresh key, e.g. one the repository is not signed with.
    static func otherKeyring(in directory: String) async throws -> String {
        let home = directory + "/other-gnupg"
        return try await makeKey(home: home, exportTo: directory + "/other-key.gpg")
    }

    private static func makeKey(home: String, exportTo keyring: String) async throws -> String {
        try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        try await ProcessRunner.check(
            "gpg",
            [
                "--batch", "--homedir", home, "--passphrase", "", "--quick-gen-key", "kiln test <t@example.invalid>", "ed25519", "sign",
                "never",
            ])
        try await ProcessRunner.check("gpg", ["--batch", "--homedir", home, "--output", keyring, "--export"])
        // The same key ASCII-armored, as third-party repositories often publish theirs.
        try await ProcessRunner.check(
            "gpg", ["--batch", "--homedir", home, "--armor", "--output", (keyring as NSString).deletingPathExtension + ".asc", "--export"])
        await stopAgent(home)
        return keyring
    }

    var suiteDirectory: String { root + "/dists/\(suite)" }
    var indexDirectory: String { suiteDirectory + "/main/binary-amd64" }

    /// The source a fetcher reads this repository with: keyring-checked when signed, else trusted.
    func source(mirror: String) -> AptSource {
        AptSource(mirror: mirror, suite: suite, components: ["main"], signedBy: keyring, trusted: !signed)
    }

    /// Serves the repository over loopback HTTP; GET of a missing file answers 404.
    func serve() throws -> RangeServer {
        try? FileManager.default.removeItem(atPath: root + "/.port")
        return try RangeServer(serving: root, stallFirstResponseAfter: 0)
    }

    func url(_ server: RangeServer) -> String { "http://127.0.0.1:\(server.port)/" }

    /// Adds packages (e.g. a later version of one already there) and publishes again.
    func add(_ more: [Package]) async throws {
        packages += more
        try await publish()
    }

    /// Writes Packages, Packages.xz, Release and (signed) InRelease for the current packages.
    func publish() async throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: indexDirectory, withIntermediateDirectories: true)
        var text = ""
        for package in packages {
            text += """
                Package: \(package.name)
                Version: \(package.version)
                Installed-Size: 123
                Maintainer: Kiln Tests <t@example.invalid>
                Architecture: \(package.architecture)
                Depends: libc6 (>= 2.36)
                Description: test package \(package.name)
                 A continuation line looks like a field but is not one:
                 Version: 999:999
                 .
                 Package: not-a-package
                Filename: pool/main/\(package.name)_\(package.version)_\(package.architecture).deb
                Size: 1000
                """
            text += "\n\n"
        }
        let packagesFile = indexDirectory + "/Packages"
        try Data(text.utf8).write(to: URL(fileURLWithPath: packagesFile))
        try await ProcessRunner.check("xz", ["--keep", "--force", "--threads=1", packagesFile])

        var hashes: [(path: String, sha256: String, size: Int)] = []
        for name in ["Packages", "Packages.xz"] {
            let data = try Data(contentsOf: URL(fileURLWithPath: indexDirectory + "/" + name))
            let sha256 = Hashing.sha256Hex(data)
            hashes.append(("main/binary-amd64/" + name, sha256, data.count))
            if byHash {
                let folder = indexDirectory + "/by-hash/SHA256"
                try fm.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try? fm.removeItem(atPath: folder + "/" + sha256)
                try fm.copyItem(atPath: indexDirectory + "/" + name, toPath: folder + "/" + sha256)
            }
        }
        var release = """
            Origin: kiln-test
            Label: kiln-test
            Suite: \(suite)
            Codename: \(suite)
            Date: \(Self.releaseDate(Date()))

            """
        if let validUntil { release += "Valid-Until: \(Self.releaseDate(validUntil))\n" }
        if byHash { release += "Acquire-By-Hash: yes\n" }
        release += "Architectures: amd64\nComponents: main\nDescription: kiln test repository\nSHA256:\n"
        for entry in hashes {
            // Padded as dak writes it, so the parser meets real spacing.
            release +=
                " \(entry.sha256) \(String(repeating: " ", count: max(0, 16 - String(entry.size).count)))\(entry.size) \(entry.path)\n"
        }
        try Data(release.utf8).write(to: URL(fileURLWithPath: suiteDirectory + "/Release"))
        if signed { try await clearsign(suiteDirectory + "/Release", to: suiteDirectory + "/InRelease") }
    }

    /// Clearsigns a file with the repository's key (signed repositories only).
    func clearsign(_ path: String, to output: String) async throws {
        guard let gnupgHome else { throw KilnError(.invalidInput, "an unsigned repository has no key") }
        try await ProcessRunner.check(
            "gpg",
            [
                "--batch", "--homedir", gnupgHome, "--yes", "--pinentry-mode", "loopback", "--passphrase", "",
                "--clearsign", "--output", output, path,
            ])
        await Self.stopAgent(gnupgHome)
    }

    static func releaseDate(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "EEE, dd MMM yyyy HH:mm:ss 'UTC'"
        return formatter.string(from: date)
    }

    /// gpg starts an agent per home directory and leaves it running; stopping it after each
    /// use leaves nothing behind when a test fails half way (gpg starts a new one when needed).
    private static func stopAgent(_ home: String) async {
        _ = try? await ProcessRunner.run("gpgconf", ["--homedir", home, "--kill", "gpg-agent"])
    }

    func remove() {
        try? FileManager.default.removeItem(atPath: directory)
    }
}
