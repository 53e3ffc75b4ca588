// B10, kiln refresh --check at scale: 50 images against real-size indexes (Debian's main
// Packages index has ~65,000 entries), served over loopback HTTP by bench/run.sh.
import Foundation
import KilnCore
import KilnModel
import KilnStore

/// Writes DIR/www (a repository: `bookworm` with 65,000 packages, `bookworm-security` with
/// 3,000), DIR/images (10 debootstrap bases, each with 4 layers: 50 templates) and DIR/home (a
/// store whose catalog holds one image per template, each with a manifest of 300-500
/// packages). Every tenth image has an installed package older than the index: the check
/// finds updates, as a real daily check usually does.
func setUpRefreshBenchmark(directory: String) async throws {
    let fm = FileManager.default
    try? fm.removeItem(atPath: directory)
    let main = packageStanzas(count: 65_000, prefix: "pkg", revision: "1")
    let security = packageStanzas(count: 3_000, prefix: "sec", revision: "1+deb12u1")
    try await publishSuite("bookworm", stanzas: main.text, root: directory + "/www")
    try await publishSuite("bookworm-security", stanzas: security.text, root: directory + "/www")

    try fm.createDirectory(atPath: directory + "/images", withIntermediateDirectories: true)
    let store = try Store(root: directory + "/home")
    var generator = SystemRandomNumberGenerator()
    for b in 0..<10 {
        try """
        image: base-\(b)
        from:
          debootstrap:
            suite: bookworm
            mirror: "${var.repo}"
            trusted: true
            updates: [{suite: bookworm-security, mirror: "${var.repo}"}]
        vars:
          repo: {}
        """.write(toFile: directory + "/images/base-\(b).yaml", atomically: true, encoding: .utf8)
        var parent = try commit(
            store, family: "base-\(b)", parent: nil, packages: manifest(main.versions, count: 300, stale: b % 10 == 0, &generator))
        for l in 0..<4 {
            try "image: app-\(b)-\(l)\nfrom: {image: \(l == 0 ? "base-\(b)" : "app-\(b)-\(l - 1)")}\n"
                .write(toFile: directory + "/images/app-\(b)-\(l).yaml", atomically: true, encoding: .utf8)
            parent = try commit(
                store, family: "app-\(b)-\(l)", parent: parent,
                packages: manifest(main.versions, count: 300 + 50 * l, stale: false, &generator))
        }
    }
}

private func packageStanzas(count: Int, prefix: String, revision: String) -> (text: String, versions: [(String, String)]) {
    var text = ""
    text.reserveCapacity(count * 700)
    var versions: [(String, String)] = []
    for i in 0..<count {
        let name = "\(prefix)\(i)"
        let version = "\(i % 7):\(1 + i % 13).\(i % 101).\(i % 7)-\(revision)"
        versions.append((name, version))
        // About the size of a real entry: dependencies, checksums and a description.
        text += """
            Package: \(name)
            Source: \(prefix)-source\(i / 3)
            Version: \(version)
            Installed-Size: \(100 + i % 5000)
            Maintainer: Debian Benchmarks <bench@example.invalid>
            Architecture: \(i % 9 == 0 ? "all" : "amd64")
            Depends: libc6 (>= 2.34), \(prefix)\((i + 1) % count) (= \(version)), \(prefix)\((i + 7) % count)
            Description: benchmark package number \(i) for kiln refresh
            Homepage: https://example.invalid/\(name)
            Description-md5: \(Hashing.sha256Hex(name).prefix(32))
            Section: misc
            Priority: optional
            Filename: pool/main/\(name.prefix(4))/\(name)/\(name)_\(version)_amd64.deb
            Size: \(20_000 + i)
            MD5sum: \(Hashing.sha256Hex("md5" + name).prefix(32))
            SHA256: \(Hashing.sha256Hex(name))


            """
    }
    return (text, versions)
}

private func publishSuite(_ suite: String, stanzas: String, root: String) async throws {
    let index = root + "/dists/\(suite)/main/binary-amd64"
    try FileManager.default.createDirectory(atPath: index, withIntermediateDirectories: true)
    try stanzas.write(toFile: index + "/Packages", atomically: true, encoding: .utf8)
    try await ProcessRunner.check("xz", ["-T2", "-3", "-k", "-f", index + "/Packages"])
    var release = "Suite: \(suite)\nCodename: \(suite)\nArchitectures: amd64\nComponents: main\nSHA256:\n"
    for name in ["Packages", "Packages.xz"] {
        let data = try Data(contentsOf: URL(fileURLWithPath: index + "/" + name))
        release += " \(Hashing.sha256Hex(data)) \(data.count) main/binary-amd64/\(name)\n"
    }
    try release.write(toFile: root + "/dists/\(suite)/Release", atomically: true, encoding: .utf8)
}

private func manifest(
    _ versions: [(String, String)], count: Int, stale: Bool, _ generator: inout SystemRandomNumberGenerator
) -> PackageManifest {
    var packages: [InstalledPackage] = []
    for n in 0..<count {
        let (name, version) = versions[Int.random(in: 0..<versions.count, using: &generator)]
        // One package older than the index's: an update to find.
        let installed = stale && n == 0 ? version.replacingOccurrences(of: "-1", with: "-0") : version
        packages.append(InstalledPackage(name: name, version: installed, architecture: "amd64", source: name, sourceVersion: installed))
    }
    return PackageManifest(packages)
}

private func commit(_ store: Store, family: String, parent: String?, packages: PackageManifest) throws -> String {
    try store.catalog.commit(
        ImageDraft(
            family: family, digest: Hashing.sha256Hex(family), parent: parent, labels: [:], description: nil, templateHash: "t", size: 0,
            log: "l", buildID: "b-\(family)", sourceKind: parent == nil ? "debootstrap" : "image", packages: packages)
    ).name
}
