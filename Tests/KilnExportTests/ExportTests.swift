import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTestSupport
import Testing

@testable import KilnDisk
@testable import KilnExport

/// Export of real ext4 disks (made by mkfs.ext4, changed by debugfs, stored as qcow2 overlays),
/// each artifact checked by the tool that would consume it. No VM.
@Suite("Export (no VM)")
final class ExportTests {
    let work = NSTemporaryDirectory() + "kiln-export-" + UUID().uuidString
    var home: String { work + "/home" }

    deinit { try? FileManager.default.removeItem(atPath: work) }

    /// A base with the fixture tree and a child that removes, replaces, adds and re-permissions.
    func graph() async throws -> (Store, base: ImageRecord, child: ImageRecord) {
        let store = try Store(root: home)
        try await ExportFixture.makeTree(at: work + "/tree")
        try await ExportFixture.mkfs(work + "/tree", into: work + "/base.raw")
        let base = try await ExportFixture.commit(work + "/base.raw", family: "base", parent: nil, in: store)
        try FileManager.default.copyItem(atPath: work + "/base.raw", toPath: work + "/child.raw")
        try Data("new file\n".utf8).write(to: URL(fileURLWithPath: work + "/added.txt"))
        try Data("hello, changed\n".utf8).write(to: URL(fileURLWithPath: work + "/hello.txt"))
        try await ExportFixture.debugfs(
            work + "/child.raw",
            [
                "rm /etc/old.conf", "rm /etc/hello.txt", "write \(work)/hello.txt /etc/hello.txt", "mkdir /opt",
                "write \(work)/added.txt /opt/added.txt", "ea_set /usr/bin/tool security.capability 0123",
            ])
        let child = try await ExportFixture.commit(work + "/child.raw", family: "app", parent: base, in: store)
        return (store, base, child)
    }

    @Test("the ext4 reader lists every kind of entry, follows extent trees with holes, and reads a GPT partition")
    func ext4Reader() async throws {
        try await ExportFixture.makeTree(at: work + "/tree")
        // The filesystem 1 MiB into a GPT disk, as cloud images are laid out.
        try await ExportFixture.run("truncate", ["-s", "80M", work + "/disk.img"])
        try await ExportFixture.run("sh", ["-c", "echo 'start=2048, size=131072, type=L' | sfdisk -q -X gpt \(work)/disk.img"])
        try await ExportFixture.run(
            "mkfs.ext4", ["-q", "-F", "-E", "offset=1048576", "-d", work + "/tree", work + "/disk.img", "64M"])
        let volume = try Ext4Volume(path: work + "/disk.img")
        var seen: [String: Ext4Inode] = [:]
        try volume.walk { path, inode in seen[path] = inode }
        #expect(seen["etc/hello.txt"]?.kind == .file && seen["etc/hello.txt"]?.uid == 1234 && seen["etc/hello.txt"]?.gid == 2345)
        #expect(seen["srv/pipe"]?.kind == .fifo && seen["srv/null"]?.kind == .characterDevice)
        #expect(seen["srv/null"].map { $0.device.major == 1 && $0.device.minor == 3 } == true)
        #expect(seen["srv/empty"]?.kind == .directory && seen["etc/café.txt"]?.kind == .file)
        #expect(seen["usr/bin/tool"]?.number == seen["usr/bin/tool-alias"]?.number && seen["usr/bin/tool"]?.links == 2)
        #expect(try volume.symlinkTarget(of: try #require(seen["etc/link"])) == "hello.txt")
        #expect(try volume.symlinkTarget(of: try #require(seen["etc/longlink"])).hasSuffix("deep/target"))
        for name in ["var/data/big.bin", "var/data/sparse.bin"] {
            var read = Data()
            try volume.readContents(of: try #require(seen[name]), chunk: 64 << 10) { read.append(contentsOf: $0) }
            #expect(read == FileManager.default.contents(atPath: work + "/tree/" + name), "\(name) reads back byte for byte")
        }
        let sparse = try #require(seen["var/data/sparse.bin"])
        #expect(try volume.extents(of: sparse).filter { $0.physical == nil }.count >= 9, "holes stay holes")
        #expect(throws: KilnError.self) { try Ext4Volume(path: work + "/tree/etc/hello.txt") }
    }

    @Test("tar.zst holds the root filesystem: GNU tar lists it, extracts it and its files compare equal")
    func tarZst() async throws {
        let (_, _, child) = try await graph()
        let out = work + "/out/rootfs.tar.zst"
        try FileManager.default.createDirectory(atPath: work + "/out", withIntermediateDirectories: true)
        let result = try await ExportFixture.kiln(["export", child.name, "--format", "tar.zst", "--output", out, "--home", home])
        #expect(result.status == 0, "\(result.stderr)")
        let listing = try await ExportFixture.run("tar", ["--zstd", "-tvf", out])
        #expect(listing.contains("crw-r--r--") || listing.contains("srv/null"))
        #expect(listing.contains("usr/bin/tool-alias link to usr/bin/tool") || listing.contains("usr/bin/tool link to usr/bin/tool-alias"))
        #expect(listing.contains("etc/link -> hello.txt") && listing.contains("etc/café.txt") && !listing.contains("etc/old.conf"))
        try FileManager.default.createDirectory(atPath: work + "/x", withIntermediateDirectories: true)
        try await ExportFixture.run("tar", ["--zstd", "-xf", out, "-C", work + "/x"])
        for (extracted, original) in [
            ("var/data/big.bin", work + "/tree/var/data/big.bin"), ("var/data/sparse.bin", work + "/tree/var/data/sparse.bin"),
            ("etc/hello.txt", work + "/hello.txt"), ("opt/added.txt", work + "/added.txt"),
        ] {
            try await ExportFixture.run("cmp", [work + "/x/" + extracted, original])
        }
        let owner = try FileManager.default.attributesOfItem(atPath: work + "/x/etc/café.txt")
        #expect((owner[.ownerAccountID] as? NSNumber)?.intValue == 0)
        // The capability debugfs set travels as a pax SCHILY.xattr record.
        let xattr = try await ExportFixture.run(
            "python3",
            [
                "-c",
                "import io, subprocess, sys, tarfile\n"
                    + "data = subprocess.run(['zstd', '-dc', sys.argv[1]], capture_output=True, check=True).stdout\n"
                    + "member = tarfile.open(fileobj=io.BytesIO(data)).getmember('usr/bin/tool')\n"
                    + "print(member.pax_headers.get('SCHILY.xattr.security.capability'))",
                out,
            ])
        #expect(xattr == "0123\n")
    }

    @Test("qcow2, raw and vmdk exports are standalone disks: qemu-img finds no backing file and no errors")
    func diskFormats() async throws {
        let (_, _, child) = try await graph()
        for format in ["qcow2", "raw", "vmdk"] {
            let out = work + "/app." + format
            let result = try await ExportFixture.kiln(["export", child.name, "--format", format, "--output", out, "--home", home])
            #expect(result.status == 0, "\(result.stderr)")
            let info = try await ExportFixture.run("qemu-img", ["info", "--output=json", out])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
            #expect(json["format"] as? String == format && json["backing-filename"] == nil)
            if format == "qcow2" { try await ExportFixture.run("qemu-img", ["check", out]) }
            // The flattened disk holds the child's files: debugfs reads them from a raw copy.
            try await ExportFixture.run("qemu-img", ["convert", "-O", "raw", out, work + "/check.raw"])
            #expect(try await ExportFixture.run("debugfs", ["-R", "cat /opt/added.txt", work + "/check.raw"]) == "new file\n")
            #expect(FileManager.default.fileExists(atPath: out + ".provenance.json"))
        }
        let again = try await ExportFixture.kiln([
            "export", child.name, "--format", "qcow2", "--output", work + "/app.qcow2", "--home", home,
        ])
        #expect(again.status == 2 && again.stderr.contains("exists (--force replaces it)"))
        let bad = try await ExportFixture.kiln(["export", child.name, "--format", "iso", "--home", home])
        #expect(bad.status == 2 && bad.stderr.contains("unknown format 'iso'"))
        let manifest = try #require(FileManager.default.contents(atPath: work + "/kiln-manifest.json"))
        let builds = try #require((try JSONSerialization.jsonObject(with: manifest) as? [String: Any])?["builds"] as? [[String: Any]])
        #expect(builds.map { $0["artifact"] as? String } == ["app.qcow2", "app.raw", "app.vmdk"])
        #expect(builds.allSatisfy { $0["image"] as? String == child.name && ($0["files"] as? [[String: Any]])?.count == 3 })
    }

    @Test(
        "long work shows its progress: periodic plain lines in CI (a last 'done' line), a bar redrawn in place on a terminal, nothing with KILN_PROGRESS=none"
    )
    func progress() async throws {
        let (_, base, child) = try await graph()
        let lines = try await ExportFixture.kiln(
            ["export", child.name, "--format", "raw", "--output", work + "/lines.raw", "--home", home],
            environment: ["KILN_PROGRESS": "lines", "KILN_PROGRESS_EVERY": "0"])
        #expect(lines.status == 0, "\(lines.stderr)")
        let shown = lines.stderr.split(separator: "\n").filter { $0.hasPrefix("export raw: ") }
        #expect(shown.contains { $0.contains(" of 64.0 MiB (") && $0.contains("/s") }, "\(lines.stderr)")
        #expect(shown.last?.hasPrefix("export raw: done, 64.0 MiB of 64.0 MiB (100%)") == true, "\(lines.stderr)")
        #expect(!lines.stderr.contains("\u{1B}"), "no escape sequences in CI logs")

        let bar = try await ExportFixture.kiln(
            ["export", child.name, "--format", "qcow2", "--output", work + "/bar.qcow2", "--home", home],
            environment: ["KILN_PROGRESS": "bar"])
        #expect(bar.status == 0, "\(bar.stderr)")
        // (The test's reader splits lines at carriage returns too: each redraw is a line here.)
        #expect(bar.stderr.contains("\n\u{1B}[2Kexport qcow2 [") && bar.stderr.contains(" of 64.0 MiB ("), "\(bar.stderr.debugDescription)")
        #expect(bar.stderr.hasSuffix("\n\u{1B}[2K\n"), "the bar's line is cleared at the end: \(bar.stderr.debugDescription)")

        let quiet = try await ExportFixture.kiln(
            ["export", base.name, "--format", "raw", "--output", work + "/quiet.raw", "--home", home],
            environment: ["KILN_PROGRESS": "none"])
        #expect(quiet.status == 0 && !quiet.stderr.contains("export raw"), "\(quiet.stderr)")

        // The registry push meters its upload too.
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let push = try await ExportFixture.kiln(
            ["export", base.name, "--format", "oci", "--push", "\(registry.host)/app:progress", "--home", home],
            environment: ["KILN_PROGRESS": "lines", "KILN_PROGRESS_EVERY": "0"])
        #expect(push.status == 0, "\(push.stderr)")
        #expect(push.stderr.contains("push sha256:") && push.stderr.contains(": done, "), "\(push.stderr)")
    }

    @Test("vhd is a fixed VHD of whole MiB and gce a tar.gz of disk.raw alone, of whole GiB; both hold the child's files")
    func cloudDiskFormats() async throws {
        let (_, _, child) = try await graph()
        let vhd = work + "/app.vhd"
        let made = try await ExportFixture.kiln(["export", child.name, "--format", "vhd", "--output", vhd, "--home", home])
        #expect(made.status == 0, "\(made.stderr)")
        // qemu-img's vpc driver refuses a file whose footer is not a VHD footer.
        let info = try await ExportFixture.run("qemu-img", ["info", "-f", "vpc", "--output=json", vhd])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
        let size = try #require(json["virtual-size"] as? Int)
        #expect(json["format"] as? String == "vpc" && size % (1 << 20) == 0)
        #expect(try FileManager.default.attributesOfItem(atPath: vhd)[.size] as? Int == size + 512)
        try await ExportFixture.run("qemu-img", ["convert", "-f", "vpc", "-O", "raw", vhd, work + "/vhd.raw"])
        #expect(try await ExportFixture.run("debugfs", ["-R", "cat /opt/added.txt", work + "/vhd.raw"]) == "new file\n")

        let gce = work + "/app.tar.gz"
        let archived = try await ExportFixture.kiln(["export", child.name, "--format", "gce", "--output", gce, "--home", home])
        #expect(archived.status == 0, "\(archived.stderr)")
        #expect(try await ExportFixture.run("tar", ["-tzf", gce]) == "disk.raw\n")
        try FileManager.default.createDirectory(atPath: work + "/gce", withIntermediateDirectories: true)
        try await ExportFixture.run("tar", ["-xzf", gce, "-C", work + "/gce"])
        let raw = work + "/gce/disk.raw"
        #expect((try FileManager.default.attributesOfItem(atPath: raw)[.size] as? Int ?? 1) % (1 << 30) == 0)
        #expect(try await ExportFixture.run("debugfs", ["-R", "cat /opt/added.txt", raw]) == "new file\n")
        #expect(FileManager.default.fileExists(atPath: gce + ".provenance.json"))
    }

    @Test("an OCI export has one layer per kiln layer: umoci unpacks it with the child's changes and whiteouts applied")
    func ociLayout() async throws {
        let (_, base, child) = try await graph()
        let out = work + "/app.oci"
        let result = try await ExportFixture.kiln(["export", child.name, "--format", "oci", "--output", out, "--home", home, "--json"])
        #expect(result.status == 0, "\(result.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        let layers = try #require((report["result"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.map { $0["image"] as? String } == [base.name, child.name])
        // The child's layer holds what it changed, not the 3 MiB file it left alone.
        let childLayer = try #require(layers.last?["digest"] as? String)
        let entries = try await ExportFixture.run("tar", ["-tzf", out + "/blobs/sha256/" + childLayer.dropFirst(7)])
        #expect(entries.contains("etc/.wh.old.conf") && entries.contains("opt/added.txt") && entries.contains("etc/hello.txt"))
        #expect(!entries.contains("big.bin") && !entries.contains("café"))
        let inspect = try await ExportFixture.run("skopeo", ["inspect", "oci:\(out):\(child.version)"])
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspect.utf8)) as? [String: Any])
        let labels = json["Labels"] as? [String: String]
        #expect(labels?["role"] == "app" && labels?["kiln.image"] == child.name && (json["Layers"] as? [String])?.count == 2)
        try await ExportFixture.run("umoci", ["unpack", "--rootless", "--image", "\(out):\(child.version)", work + "/bundle"])
        let rootfs = work + "/bundle/rootfs"
        #expect(!FileManager.default.fileExists(atPath: rootfs + "/etc/old.conf"))
        #expect(FileManager.default.contents(atPath: rootfs + "/etc/hello.txt") == Data("hello, changed\n".utf8))
        try await ExportFixture.run("cmp", [rootfs + "/var/data/big.bin", work + "/tree/var/data/big.bin"])
        // The same image exports to the same bytes: a registry that has a layer is not sent it again.
        let second = try await ExportFixture.kiln([
            "export", child.name, "--format", "oci", "--output", work + "/again.oci", "--home", home,
        ])
        #expect(second.status == 0)
        let index = { (path: String) in try OCILayout(path: path).manifest().0.digest }
        #expect(try index(out) == index(work + "/again.oci"))
    }

    @Test("a push sends only what the registry lacks; a push that keeps no layout does not even make the layers it has")
    func pushReusesLayers() async throws {
        let (_, base, child) = try await graph()
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        func push(_ image: String, _ tag: String) async throws -> (result: [String: Any], push: [String: Any]) {
            let run = try await ExportFixture.kiln(
                ["export", image, "--format", "oci", "--push", "\(registry.host)/app:\(tag)", "--json", "--home", home])
            try #require(run.status == 0, "\(run.stderr)")
            let json = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any])
            return (try #require(json["result"] as? [String: Any]), try #require(json["push"] as? [String: Any]))
        }
        let first = try await push(base.name, "base")
        #expect((first.push["uploaded"] as? [String])?.count == 2)
        let second = try await push(child.name, "app")
        let layers = try #require(second.result["layers"] as? [[String: Any]])
        #expect(layers.map { $0["reused"] as? Bool } == [true, nil], "the base layer is not made again")
        #expect((second.push["uploaded"] as? [String])?.count == 2 && (second.push["existing"] as? [String])?.count == 1)
        let uploads = registry.requests("POST", containing: "/blobs/uploads/").count
        let third = try await push(child.name, "again")
        #expect((third.result["layers"] as? [[String: Any]])?.allSatisfy { $0["reused"] as? Bool == true } == true)
        #expect((third.push["uploaded"] as? [String]) == [] && registry.requests("POST", containing: "/blobs/uploads/").count == uploads)
        let scratch = (try? FileManager.default.contentsOfDirectory(atPath: home + "/builds")) ?? []
        #expect(scratch.isEmpty, "no scratch left")
        let pulled = work + "/pulled"
        try await ExportFixture.run(
            "skopeo", ["copy", "--src-tls-verify=false", "docker://\(registry.host)/app:again", "oci:\(pulled):again"])
        try await ExportFixture.run("umoci", ["unpack", "--rootless", "--image", "\(pulled):again", work + "/bundle"])
        #expect(FileManager.default.contents(atPath: work + "/bundle/rootfs/opt/added.txt") == Data("new file\n".utf8))
    }

    @Test("the SBOM is valid SPDX 2.3 (pyspdxtools), and the provenance names the disk, parents and template")
    func provenanceAndSBOM() async throws {
        let (store, base, child) = try await graph()
        let inspected = try await ExportFixture.kiln(["inspect", child.name, "--provenance", "--home", home])
        #expect(inspected.status == 0)
        let provenance = try Provenance.decode(Data(inspected.stdout.utf8), path: "stdout")
        #expect(provenance.image.digest == "sha256:" + child.digest && provenance.parents.map(\.name) == [base.name])
        #expect(provenance.parents.first?.digest == "sha256:" + base.digest && provenance.templateDigest == "sha256:" + child.templateHash)
        #expect(Data(inspected.stdout.utf8) == store.provenanceData(of: child.name))
        let spdx = try await ExportFixture.kiln(["inspect", child.name, "--spdx", "--home", home])
        try spdx.stdout.write(toFile: work + "/app.spdx.json", atomically: true, encoding: .utf8)
        try await ExportFixture.run("pyspdxtools", ["-i", work + "/app.spdx.json"])
        let both = try await ExportFixture.kiln(["inspect", child.name, "--spdx", "--provenance", "--home", home])
        #expect(both.status == 2)
    }

    @Test(
        "SLSA v1 provenance in a DSSE envelope: securesystemslib verifies the store's and an export's with kiln's key; kiln verify refuses a changed envelope"
    )
    func standardAttestations() async throws {
        let (_, _, child) = try await graph()
        func kiln(_ arguments: [String]) async throws -> ProcessResult { try await ExportFixture.kiln(arguments + ["--home", home]) }
        #expect(try await kiln(["keys", "generate"]).status == 0)
        #expect(try await kiln(["sign", child.name]).status == 0)
        let verifier = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/verify_dsse.py"
        func outside(_ envelope: String) async throws -> ProcessResult {
            try await ProcessRunner.run("python3", [verifier, envelope, home + "/keys/kiln.pub"])
        }
        let stored = try await outside(home + "/provenance/\(child.name).intoto.jsonl")
        #expect(stored.status == 0, "\(stored.stdout)\(stored.stderr)")
        #expect(stored.stdout == "https://slsa.dev/provenance/v1\n\(child.name) \(child.digest)\n", "\(stored.stdout)")

        let artifact = work + "/app.qcow2"
        #expect(try await kiln(["export", child.name, "--format", "qcow2", "--output", artifact]).status == 0)
        let exported = try await outside(artifact + ".intoto.jsonl")
        #expect(exported.status == 0, "\(exported.stdout)\(exported.stderr)")
        #expect(exported.stdout == "https://slsa.dev/provenance/v1\napp.qcow2 \(try Hashing.sha256Hex(fileAt: artifact))\n")
        let line = try #require(FileManager.default.contents(atPath: artifact + ".intoto.jsonl"))
        let envelope = try JSONDecoder().decode(DSSEEnvelope.self, from: line)
        let body = try #require(Data(base64Encoded: envelope.payload))
        let statement = try #require(try JSONSerialization.jsonObject(with: body) as? [String: Any])
        #expect(statement["_type"] as? String == "https://in-toto.io/Statement/v1")
        let predicate = try #require(statement["predicate"] as? [String: Any])
        let definition = try #require(predicate["buildDefinition"] as? [String: Any])
        let dependencies = try #require(definition["resolvedDependencies"] as? [[String: Any]])
        #expect(dependencies.first?["name"] as? String == child.parent, "the parent image is a resolved dependency")

        // A statement changed under its signature: the outside verifier and kiln both refuse it.
        var forged = try InTotoStatement.decode(body)
        forged.subject[0].digest = ["sha256": String(repeating: "0", count: 64)]
        var changed = envelope
        changed.payload = try forged.encoded().base64EncodedString()
        try changed.line().write(to: URL(fileURLWithPath: artifact + ".intoto.jsonl"))
        #expect(try await outside(artifact + ".intoto.jsonl").status == 1)
        let refused = try await kiln(["verify", "--artifact", artifact])
        #expect(
            refused.status == 1 && refused.stdout.contains("attestation: the attestation is not signed by a trusted key"),
            "\(refused.stdout)")
        try changed.line().write(to: URL(fileURLWithPath: home + "/provenance/\(child.name).intoto.jsonl"))
        let store = try await kiln(["verify", child.name])
        #expect(store.status == 1 && store.stdout.contains("attestation:"), "\(store.stdout)")
    }

    @Test("signatures: kiln verify accepts a signed image and export, and fails a changed blob, catalog row, record or key")
    func signing() async throws {
        let (store, base, child) = try await graph()
        func kiln(_ arguments: [String]) async throws -> ProcessResult { try await ExportFixture.kiln(arguments + ["--home", home]) }
        #expect(try await kiln(["sign", child.name]).status == 2, "no key yet")
        #expect(try await kiln(["keys", "generate"]).status == 0)
        #expect(try await kiln(["keys", "generate"]).status == 2, "an existing key is kept")
        let mode = try FileManager.default.attributesOfItem(atPath: home + "/keys/kiln.key")[.posixPermissions] as? Int
        #expect(mode == 0o600)
        #expect(try await kiln(["sign", child.name]).status == 0)
        // The child stands on its base's bytes: the base must be signed too.
        let unsigned = try await kiln(["verify", child.name, "--require-signature"])
        #expect(unsigned.status == 1 && unsigned.stdout.contains("FAILED  \(base.name): unsigned"), "\(unsigned.stdout)")
        #expect(try await kiln(["sign", base.name]).status == 0)
        let ok = try await kiln(["verify", child.name, "--require-signature"])
        #expect(ok.status == 0 && ok.stdout.contains("ok      \(child.name)") && ok.stdout.contains("signed by"), "\(ok.stdout)")

        // An export is signed with the same key, and checked from its own files.
        let artifact = work + "/app.tar.zst"
        #expect(try await kiln(["export", child.name, "--format", "tar.zst", "--output", artifact]).status == 0)
        let good = try await kiln(["verify", "--artifact", artifact])
        #expect(good.status == 0 && good.stdout.contains("signed by"), "\(good.stdout)\(good.stderr)")
        let handle = try #require(FileHandle(forWritingAtPath: artifact))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data([0]))
        try handle.close()
        let tampered = try await kiln(["verify", "--artifact", artifact])
        #expect(tampered.status == 1 && tampered.stdout.contains("signature"))

        // Another machine trusts only the .pub it was given.
        let other = work + "/other"
        #expect(try await ExportFixture.kiln(["keys", "generate", "--output", other]).status == 0)
        try FileManager.default.removeItem(atPath: home + "/keys/kiln.pub")
        let untrusted = try await kiln(["verify", child.name])
        #expect(untrusted.status == 1 && untrusted.stdout.contains("not trusted"))
        let wrongKey = try await kiln(["verify", child.name, "--key", other + ".pub"])
        #expect(wrongKey.status == 1 && wrongKey.stdout.contains("not trusted"), "a key that did not sign does not vouch for it")
        let pub = try SigningKey.load(home + "/keys/kiln.key").publicKey.line
        try pub.write(toFile: home + "/keys/kiln.pub", atomically: true, encoding: .utf8)

        // A catalog row pointed at other bytes: the record it signed names the old digest.
        let disk = store.diskPath(of: child)
        let forged = store.blobDirectory(digest: String(repeating: "0", count: 64))
        try FileManager.default.copyItem(atPath: store.blobDirectory(digest: child.digest), toPath: forged)
        let db = work + "/home/catalog.sqlite"
        try await ExportFixture.run(
            "python3",
            [
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE image SET digest=? WHERE name=?',(sys.argv[2],sys.argv[3])); c.commit()",
                db, String(repeating: "0", count: 64), child.name,
            ])
        let moved = try await kiln(["verify", child.name])
        #expect(moved.status == 1 && moved.stdout.contains("provenance records disk sha256:\(child.digest)"), "\(moved.stdout)")
        try await ExportFixture.run(
            "python3",
            [
                "-c",
                "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('UPDATE image SET digest=? WHERE name=?',(sys.argv[2],sys.argv[3])); c.commit()",
                db, child.digest, child.name,
            ])
        #expect(try await kiln(["verify", child.name]).status == 0)

        // The blob itself changed under the signed row.
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: disk)
        let blob = try #require(FileHandle(forWritingAtPath: disk))
        try blob.seekToEnd()
        try blob.write(contentsOf: Data([1]))
        try blob.close()
        try FileManager.default.setAttributes([.posixPermissions: 0o444], ofItemAtPath: disk)
        let damaged = try await kiln(["verify", child.name])
        #expect(damaged.status == 1 && damaged.stdout.contains("blob damaged"))

        // A record edited after signing.
        var record = try #require(store.provenanceData(of: child.name))
        record.append(contentsOf: Data(" ".utf8))
        try record.write(to: URL(fileURLWithPath: store.provenancePath(of: child.name)))
        let edited = try await kiln(["verify", child.name])
        #expect(edited.stdout.contains("the signed record changed since it was signed"))
    }
}
