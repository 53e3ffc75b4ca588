import Foundation
import KilnCore
import KilnTestSupport
import Testing

extension VMBuildTests {
    @Test("examples/debian's product exports as qcow2, raw, vmdk, tar.zst and OCI, each read back by the tool that consumes it")
    func exportEveryFormat() async throws {
        let dir = try await exampleAndScratchDirectory("export")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let store = SharedStore.shared
        let product = try #require(try await store.image("shop-web")["name"] as? String)
        let nginxConf = try #require(FileManager.default.contents(atPath: Repo.root + "/examples/debian/files/nginx.conf"))
        let index = try #require(FileManager.default.contents(atPath: Repo.root + "/examples/debian/site/index.html"))

        for format in ["qcow2", "raw", "vmdk"] {
            let out = dir + "/web." + format
            let result = try await store.kiln(["export", product, "--format", format, "--output", out])
            #expect(result.status == 0, "\(result.stderr)")
            let info = try await ProcessRunner.check("qemu-img", ["info", "--output=json", out])
            let json = try #require(try JSONSerialization.jsonObject(with: Data(info.stdout.utf8)) as? [String: Any])
            #expect(json["format"] as? String == format && json["backing-filename"] == nil, "\(info.stdout)")
            if format == "qcow2" { try await ProcessRunner.check("qemu-img", ["check", out]) }
            // One read of a file on each disk: debugfs on the raw file itself, on a raw copy of the qcow2.
            if format == "raw" {
                let root = try await FlatDisk.rootFilesystem(out)
                #expect(root != out, "the raw disk has a partition table")
                let release = try await ProcessRunner.check("debugfs", ["-R", "cat /etc/shop-release", root])
                #expect(release.stdout == "1.0\n")
            } else if format == "qcow2" {
                let flat = try await FlatDisk(of: out)
                defer { flat.remove() }
                #expect(try await flat.cat("/etc/shop-release") == "1.0\n")
                #expect(try await flat.cat("/etc/nginx/nginx.conf").map { Data($0.utf8) } == nginxConf)
            }
            try FileManager.default.removeItem(atPath: out)
        }

        let tar = dir + "/web.tar.zst"
        #expect(try await store.kiln(["export", product, "--format", "tar.zst", "--output", tar]).status == 0)
        let listing = try await ProcessRunner.check("tar", ["--zstd", "-tf", tar]).stdout
        #expect(
            listing.contains("etc/nginx/nginx.conf\n") && listing.contains("usr/sbin/nginx\n")
                && listing.contains("var/www/html/index.html\n"))
        try FileManager.default.createDirectory(atPath: dir + "/x", withIntermediateDirectories: true)
        try await ProcessRunner.check("tar", ["--zstd", "-xf", tar, "-C", dir + "/x", "etc/nginx/nginx.conf", "var/www/html/index.html"])
        #expect(FileManager.default.contents(atPath: dir + "/x/etc/nginx/nginx.conf") == nginxConf)
        #expect(FileManager.default.contents(atPath: dir + "/x/var/www/html/index.html") == index)
        try FileManager.default.removeItem(atPath: tar)

        // OCI: a layout kept on disk and pushed to a real registry, then pushed again (the fast
        // ExportTests push a child onto a parent the registry has).
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        func push(_ image: String, tag: String, output: String? = nil) async throws -> [String: Any] {
            let result = try await store.kiln(
                ["export", image, "--format", "oci", "--push", "\(registry.host)/shop/web:\(tag)", "--json"]
                    + (output.map { ["--output", $0] } ?? []))
            try #require(result.status == 0, "\(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        }
        let layout = dir + "/web.oci"
        let first = try await push(product, tag: "v1", output: layout)
        let pushed = try #require(first["push"] as? [String: Any])
        let layers = try #require((first["result"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.compactMap { $0["image"] as? String }.count == 3, "base, app and product layers")
        #expect((pushed["uploaded"] as? [String])?.count == 4 && (pushed["existing"] as? [String])?.isEmpty == true)
        let uploadsBefore = registry.requests("POST", containing: "/blobs/uploads/").count
        let againReport = try await push(product, tag: "v2")
        let againLayers = try #require((againReport["result"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(againLayers.allSatisfy { $0["reused"] as? Bool == true }, "no layer is made again for a registry that has it")
        let again = try #require(againReport["push"] as? [String: Any])
        #expect((again["uploaded"] as? [String])?.isEmpty == true && (again["existing"] as? [String])?.count == 4)
        #expect(registry.requests("POST", containing: "/blobs/uploads/").count == uploadsBefore, "no upload started")

        // The layout on disk, by skopeo; the pushed image, pulled back by skopeo and unpacked by umoci.
        let inspect = try await ProcessRunner.check("skopeo", ["inspect", "oci:\(layout):v1"]).stdout
        #expect(inspect.contains("\"kiln.image\": \"\(product)\""))
        let pulled = dir + "/pulled"
        try await ProcessRunner.check(
            "skopeo", ["copy", "--src-tls-verify=false", "docker://\(registry.host)/shop/web:v1", "oci:\(pulled):v1"])
        let remote = try await ProcessRunner.check("skopeo", ["inspect", "--tls-verify=false", "docker://\(registry.host)/shop/web:v2"])
            .stdout
        let digest = try #require(pushed["manifest_digest"] as? String)
        #expect(remote.contains("\"Digest\": \"\(digest)\""))
        try await ProcessRunner.check("umoci", ["unpack", "--rootless", "--image", "\(pulled):v1", dir + "/bundle"])
        #expect(FileManager.default.contents(atPath: dir + "/bundle/rootfs/etc/shop-release") == Data("1.0\n".utf8))
        #expect(FileManager.default.contents(atPath: dir + "/bundle/rootfs/etc/nginx/nginx.conf") == nginxConf)
        #expect(FileManager.default.fileExists(atPath: dir + "/bundle/rootfs/usr/sbin/nginx"))
    }
}
