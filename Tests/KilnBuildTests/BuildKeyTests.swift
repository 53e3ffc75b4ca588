import Foundation
import KilnCore
import KilnModel
import KilnTemplates
import Testing

@testable import KilnBuild
@testable import KilnStore

/// Key inputs computed straight from template files, with a fixed parent or source.
struct KeyFixture {
    let dir = NSTemporaryDirectory() + "kiln-keys-" + UUID().uuidString

    static let source = SourceIdentity(
        fields: ["source.kind": "debootstrap", "source.suite": "bookworm", "source.release": "r1"], summary: "test")

    init(_ template: String, files: [String: String] = [:]) throws {
        try write(template, files: files)
    }

    func write(_ template: String, files: [String: String] = [:]) throws {
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        for (name, text) in files {
            let path = dir + "/" + name
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: path, atomically: true, encoding: .utf8)
        }
        try template.write(toFile: dir + "/t.yaml", atomically: true, encoding: .utf8)
    }

    func inputs(parent: ImageRecord? = nil, source: SourceIdentity? = source, env: [String: String] = [:]) throws -> KeyInputs {
        let set = try TemplateLoader(environment: env).load(path: dir)
        return try BuildKeys.inputs(
            for: set.templates[0], parent: parent, source: parent == nil ? source : nil, secrets: set.sensitiveValues,
            conceal: Self.concealer)
    }

    func remove() { try? FileManager.default.removeItem(atPath: dir) }

    /// One catalog's key, the same for every fixture (as one catalog's builds share it).
    static let concealer = Concealer(key: Data(repeating: 0x6B, count: 32))
}

func parentImage(_ digest: String, name: String) -> ImageRecord {
    ImageRecord(
        name: name, family: "base", version: "v1", digest: digest, parent: nil, state: .ready, created: Date(), labels: "{}",
        description: nil, templateHash: "", size: 0, log: "", buildID: "", sourceKind: "debootstrap", buildKey: nil, keyInputs: nil)
}

@Suite("Build keys")
struct BuildKeyTests {
    static let template = """
        image: app
        description: the app
        from: {image: base}
        vars:
          release: {default: "1.2"}
          token: {sensitive: true, default: s3cret}
        provision:
          - shell: {script: scripts/setup.sh, env: {RELEASE: "${var.release}"}}
          - file: {src: files/app.conf, dest: /etc/app.conf}
          - file: {src: site/, dest: /var/www/}
          - shell: echo ${var.release}
        labels: {role: web, tier: front}
        """
    static let files = [
        "scripts/setup.sh": "echo setup\n", "files/app.conf": "port 80\n", "site/index.html": "<h1>hi</h1>\n",
        "site/css/a.css": "body {}\n",
    ]
    let parent = parentImage("aaaa", name: "base-v20261123-1")

    @Test("the same inputs give the same key wherever the templates live and however maps are ordered")
    func stable() throws {
        let one = try KeyFixture(Self.template, files: Self.files)
        let two = try KeyFixture(
            Self.template.replacingOccurrences(of: "labels: {role: web, tier: front}", with: "labels:\n  tier: front\n  role: web"),
            files: Self.files)
        defer {
            one.remove()
            two.remove()
        }
        let a = try one.inputs(parent: parent)
        let b = try two.inputs(parent: parent)
        #expect(one.dir != two.dir)
        #expect(a == b)
        #expect(a.key == b.key)
        #expect(try one.inputs(parent: parent).key == a.key)
        // No absolute path, timestamp or secret in what is hashed.
        let text = a.json
        #expect(!text.contains(one.dir))
        #expect(!text.contains("s3cret"))
        #expect(a.entries["provision[0].shell.script"]?.hasPrefix("scripts/setup.sh sha256:") == true)
        #expect(a.entries["provision[2].src"]?.hasPrefix("site/ sha256:") == true)
    }

    @Test("a sensitive value enters the key as the catalog's keyed hash: never its plain SHA-256; one key per catalog, kept")
    func keyedHash() throws {
        let fixture = try KeyFixture(Self.template, files: Self.files)
        defer { fixture.remove() }
        let inputs = try fixture.inputs(parent: parent)
        let entry = try #require(inputs.entries["var.token"])
        #expect(entry.hasPrefix("hmac-sha256:") && !entry.contains(Hashing.sha256Hex("s3cret")) && !entry.contains("s3cret"))
        #expect(try fixture.inputs(parent: parent) == inputs)
        let dir = NSTemporaryDirectory() + "kiln-conceal-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let one = try Catalog(path: dir + "/one.sqlite")
        let two = try Catalog(path: dir + "/two.sqlite")
        #expect(try one.concealer()("s3cret") == Catalog(path: dir + "/one.sqlite").concealer()("s3cret"))
        #expect(try one.concealer()("s3cret") != two.concealer()("s3cret"))
    }

    @Test("a FIFO inside an uploaded tree is an error, not a read that blocks forever")
    func fifoInTree() throws {
        let dir = NSTemporaryDirectory() + "kiln-fifo-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/site", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "x".write(toFile: dir + "/site/a", atomically: true, encoding: .utf8)
        #expect(mkfifo(dir + "/site/pipe", 0o644) == 0)
        #expect { _ = try BuildKeys.treeHash(dir + "/site") } throws: { "\($0)".contains("pipe is not a regular file") }
        #expect { _ = try BuildKeys.treeHash(dir + "/site/pipe") } throws: { "\($0)".contains("not a regular file") }
    }

    @Test("every kind of input changes the key and is named in the reason")
    func sensitive() throws {
        let fixture = try KeyFixture(Self.template, files: Self.files)
        defer { fixture.remove() }
        let base = try fixture.inputs(parent: parent)
        func check(_ expected: [String], _ change: () throws -> KeyInputs) throws {
            let changed = try change()
            #expect(changed.key != base.key, "\(expected) did not change the key")
            #expect(
                BuildKeys.reasons(from: base, to: changed, parentFamily: "base", parentName: "base-v20261123-2") == expected)
            try fixture.write(Self.template, files: Self.files)
        }
        try check(["parent base moved to base-v20261123-2"]) { try fixture.inputs(parent: parentImage("bbbb", name: "base-v20261123-2")) }
        try check(["provision[0].shell.script scripts/setup.sh changed"]) {
            try fixture.write(Self.template, files: ["scripts/setup.sh": "echo setup 2\n"])
            return try fixture.inputs(parent: parent)
        }
        try check(["provision[1].src files/app.conf changed"]) {
            try fixture.write(Self.template, files: ["files/app.conf": "port 8080\n"])
            return try fixture.inputs(parent: parent)
        }
        try check(["provision[2].src site/ changed"]) {
            try fixture.write(Self.template, files: ["site/css/b.css": "p {}\n"])
            defer { try? FileManager.default.removeItem(atPath: fixture.dir + "/site/css/b.css") }
            return try fixture.inputs(parent: parent)
        }
        // Step 3's script names ${var.release}: the value reaches it (and its key) through its environment.
        try check([
            "provision[0].shell.env.RELEASE: 1.2 -> 1.3", "provision[3].shell.env.KILN_VAR_release: 1.2 -> 1.3", "var release: 1.2 -> 1.3",
        ]) {
            try fixture.inputs(parent: parent, env: ["KILN_VAR_release": "1.3"])
        }
        try check(["var.token changed"]) { try fixture.inputs(parent: parent, env: ["KILN_VAR_token": "other"]) }
        try check(["labels.role: web -> api"]) {
            try fixture.write(Self.template.replacingOccurrences(of: "role: web", with: "role: api"))
            return try fixture.inputs(parent: parent)
        }
        try check(["description: the app -> the new app"]) {
            try fixture.write(Self.template.replacingOccurrences(of: "description: the app", with: "description: the new app"))
            return try fixture.inputs(parent: parent)
        }
        try check(["provision[1].dest: /etc/app.conf -> /etc/app2.conf"]) {
            try fixture.write(Self.template.replacingOccurrences(of: "dest: /etc/app.conf", with: "dest: /etc/app2.conf"))
            return try fixture.inputs(parent: parent)
        }
        try check(["provision[4].shell added"]) {
            try fixture.write(Self.template.replacingOccurrences(of: "labels:", with: "  - shell: echo more\nlabels:"))
            return try fixture.inputs(parent: parent)
        }
    }

    @Test("a base's key follows its source: suite, mirror state and disk size")
    func sourceInputs() throws {
        let fixture = try KeyFixture("image: base\nfrom: {debootstrap: {suite: bookworm}}\nprovider: {qemu: {disk_size: 4G}}\n")
        defer { fixture.remove() }
        let base = try fixture.inputs()
        var moved = KeyFixture.source
        moved.fields["source.release"] = "r2"
        let newRelease = try fixture.inputs(source: moved)
        #expect(newRelease.key != base.key)
        #expect(BuildKeys.reasons(from: base, to: newRelease, parentFamily: nil, parentName: nil) == ["source.release: r1 -> r2"])
        try fixture.write("image: base\nfrom: {debootstrap: {suite: bookworm}}\nprovider: {qemu: {disk_size: 8G}}\n")
        let bigger = try fixture.inputs()
        #expect(
            BuildKeys.reasons(from: base, to: bigger, parentFamily: nil, parentName: nil) == [
                "provider.qemu.disk_size: 4294967296 -> 8589934592"
            ])
    }
}
