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
            if format != "raw" {
                let flat = try await FlatDisk(of: out)
                defer { flat.remove() }
                #expect(try await flat.cat("/etc/shop-release") == "1.0\n")
                #expect(try await flat.cat("/etc/nginx/nginx.conf").map { Data($0.utf8) } == nginxConf)
            } else {
                let release = try await ProcessRunner.check("debugfs", ["-R", "cat /etc/shop-release", out])
                #expect(release.stdout == "1.0\n")
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

        // OCI, pushed to a real registry: the app image first, then the product, whose base and
        // app layers the registry then has and is not sent again; then the product once more.
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        func push(_ image: String, tag: String, output: String? = nil) async throws -> [String: Any] {
            let result = try await store.kiln(
                ["export", image, "--format", "oci", "--push", "\(registry.host)/shop/web:\(tag)", "--json"]
                    + (output.map { ["--output", $0] } ?? []))
            try #require(result.status == 0, "\(result.stderr)")
            return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
        }
        let app = try #require(try await store.image("debian-12-nginx")["name"] as? String)
        let first = try #require(try await push(app, tag: "app")["push"] as? [String: Any])
        #expect((first["uploaded"] as? [String])?.count == 3, "config, base layer, app layer")
        let layout = dir + "/web.oci"
        let second = try await push(product, tag: "v1", output: layout)
        let pushed = try #require(second["push"] as? [String: Any])
        let layers = try #require((second["result"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(layers.count == 3)
        let layerDigests = layers.compactMap { $0["digest"] as? String }
        let uploaded = Set(pushed["uploaded"] as? [String] ?? [])
        #expect(uploaded.count == 2 && uploaded.contains(layerDigests[2]), "only the config and the product layer")
        #expect(Set(pushed["existing"] as? [String] ?? []) == Set(layerDigests[0..<2]))
        let uploadsBefore = registry.requests("POST", containing: "/blobs/uploads/").count
        let thirdReport = try await push(product, tag: "v2")
        let thirdLayers = try #require((thirdReport["result"] as? [String: Any])?["layers"] as? [[String: Any]])
        #expect(thirdLayers.allSatisfy { $0["reused"] as? Bool == true }, "no layer is made again for a registry that has it")
        let third = try #require(thirdReport["push"] as? [String: Any])
        #expect((third["uploaded"] as? [String])?.isEmpty == true && (third["existing"] as? [String])?.count == 4)
        #expect(registry.requests("POST", containing: "/blobs/uploads/").count == uploadsBefore, "no upload started")

        // The layout on disk, by umoci; the pushed image, pulled back by skopeo.
        let inspect = try await ProcessRunner.check("skopeo", ["inspect", "oci:\(layout):v1"]).stdout
        #expect(inspect.contains("\"kiln.image\": \"\(product)\""))
        let pulled = dir + "/pulled"
        try await ProcessRunner.check(
            "skopeo", ["copy", "--src-tls-verify=false", "docker://\(registry.host)/shop/web:v1", "oci:\(pulled):v1"])
        let remote = try await ProcessRunner.check("skopeo", ["inspect", "--tls-verify=false", "docker://\(registry.host)/shop/web:v2"])
            .stdout
        let digest = try #require(pushed["manifestDigest"] as? String)
        #expect(remote.contains("\"Digest\": \"\(digest)\""))
        try await ProcessRunner.check("umoci", ["unpack", "--rootless", "--image", "\(pulled):v1", dir + "/bundle"])
        #expect(FileManager.default.contents(atPath: dir + "/bundle/rootfs/etc/shop-release") == Data("1.0\n".utf8))
        #expect(FileManager.default.contents(atPath: dir + "/bundle/rootfs/etc/nginx/nginx.conf") == nginxConf)
        #expect(FileManager.default.fileExists(atPath: dir + "/bundle/rootfs/usr/sbin/nginx"))
    }
}
