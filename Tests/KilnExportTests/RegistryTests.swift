import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnExport
@testable import KilnRegistry

/// An OCI layout made by umoci, so layers are real tar+gzip blobs: `base` has one layer (a
/// greeting and 300 KiB of noise that gzip cannot shrink, several 64 KiB chunks), `extended`
/// is `base` plus one more layer.
struct TestLayout {
    let directory: String
    var layout: OCILayout { OCILayout(path: directory + "/layout") }
    static let greeting = "hello from kiln\n"

    static func make() async throws -> TestLayout {
        let umoci = try requiredTool("umoci")
        let directory = NSTemporaryDirectory() + "kiln-push-" + UUID().uuidString
        let files = FileManager.default
        try files.createDirectory(atPath: directory + "/one/etc", withIntermediateDirectories: true)
        try files.createDirectory(atPath: directory + "/two/srv", withIntermediateDirectories: true)
        try greeting.write(toFile: directory + "/one/etc/greeting", atomically: true, encoding: .utf8)
        var generator = SeededGenerator(state: 7)
        let noise = Data((0..<(300 << 10)).map { _ in UInt8.random(in: 0...255, using: &generator) })
        try noise.write(to: URL(fileURLWithPath: directory + "/one/etc/noise.bin"))
        try "second layer\n".write(toFile: directory + "/two/srv/readme", atomically: true, encoding: .utf8)
        let image = directory + "/layout"
        try await ProcessRunner.check(umoci, ["init", "--layout", image])
        try await ProcessRunner.check(umoci, ["new", "--image", image + ":base"])
        try await ProcessRunner.check(umoci, ["insert", "--rootless", "--image", image + ":base", directory + "/one/etc", "/etc"])
        try await ProcessRunner.check(umoci, ["tag", "--image", image + ":base", "extended"])
        try await ProcessRunner.check(
            umoci, ["insert", "--rootless", "--image", image + ":extended", directory + "/two/srv", "/srv"])
        return TestLayout(directory: directory)
    }

    func remove() { try? FileManager.default.removeItem(atPath: directory) }
}

private func ref(_ text: String) throws -> RegistryReference { try RegistryReference(parsing: text) }

@Suite("Pushing to a registry (docker-registry on loopback)")
struct RegistryPushTests {
    @Test("a pushed layout pulls back with skopeo: same manifest digest, same layer bytes, files readable")
    func pushThenPullWithSkopeo() async throws {
        let skopeo = try requiredTool("skopeo")
        let umoci = try requiredTool("umoci")
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let target = try ref("\(registry.host)/shop/web:t1")
        let client = RegistryClient(reference: target, chunkSize: 64 << 10)
        var lines: [String] = []
        let report = try await Registry.push(
            layout: fixture.layout, tag: "base", to: target, client: client, progress: { lines.append($0) })

        let (descriptor, manifest, manifestData) = try fixture.layout.manifest(tag: "base")
        #expect(report.manifestDigest == descriptor.digest)
        #expect(report.uploaded == [manifest.config.digest] + manifest.layers.map(\.digest))
        #expect(report.existing.isEmpty)
        #expect(report.reference == "\(registry.host)/shop/web:t1")
        #expect(lines.count == 3)
        // The 300 KiB layer went in 64 KiB pieces.
        let layer = try #require(manifest.layers.first)
        #expect(layer.size > 4 * (64 << 10))
        #expect(registry.requests("PATCH", containing: "/v2/shop/web/blobs/uploads/").count >= 5)

        let raw = try await ProcessRunner.check(
            skopeo, ["inspect", "--raw", "--tls-verify=false", "docker://\(registry.host)/shop/web:t1"])
        #expect("sha256:" + Hashing.sha256Hex(Data(raw.stdout.utf8).prefix(manifestData.count)) == descriptor.digest)

        let pulled = fixture.directory + "/pulled"
        try await ProcessRunner.check(
            skopeo,
            [
                "copy", "--insecure-policy", "--preserve-digests", "--src-tls-verify=false",
                "docker://\(registry.host)/shop/web:t1", "oci:\(pulled):t1",
            ])
        let back = OCILayout(path: pulled)
        let (pulledDescriptor, pulledManifest, _) = try back.manifest(tag: "t1")
        #expect(pulledDescriptor.digest == descriptor.digest)
        #expect(pulledManifest.layers.map(\.digest) == manifest.layers.map(\.digest))
        for blob in [manifest.config] + manifest.layers {
            #expect(
                FileManager.default.contentsEqual(
                    atPath: back.blobPath(blob.digest), andPath: fixture.layout.blobPath(blob.digest)))
        }
        try await ProcessRunner.check(umoci, ["unpack", "--rootless", "--image", pulled + ":t1", fixture.directory + "/bundle"])
        let greeting = try String(contentsOfFile: fixture.directory + "/bundle/rootfs/etc/greeting", encoding: .utf8)
        #expect(greeting == TestLayout.greeting)
    }

    @Test("blobs the registry has are not uploaded again; a layout one layer longer uploads only that layer and its config")
    func existingBlobsAreSkipped() async throws {
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let first = try ref("\(registry.host)/shop/web:t1")
        let client = RegistryClient(reference: first, chunkSize: 64 << 10)
        let (_, base, _) = try fixture.layout.manifest(tag: "base")
        _ = try await Registry.push(layout: fixture.layout, tag: "base", to: first, client: client)
        let uploadsAfterFirst = registry.requests("POST", containing: "/blobs/uploads/").count
        #expect(uploadsAfterFirst == 2)

        let again = try await Registry.push(
            layout: fixture.layout, tag: "base", to: try ref("\(registry.host)/shop/web:t2"), client: client)
        #expect(again.uploaded.isEmpty)
        #expect(again.existing == [base.config.digest] + base.layers.map(\.digest))
        #expect(registry.requests("POST", containing: "/blobs/uploads/").count == uploadsAfterFirst)
        #expect(registry.requests("PUT", containing: "/v2/shop/web/manifests/t2").count == 1)

        let (extendedDescriptor, extended, _) = try fixture.layout.manifest(tag: "extended")
        #expect(extended.layers.count == 2)
        let grown = try await Registry.push(
            layout: fixture.layout, tag: "extended", to: try ref("\(registry.host)/shop/web:t3"), client: client)
        #expect(grown.uploaded == [extended.config.digest, extended.layers[1].digest])
        #expect(grown.existing == [extended.layers[0].digest])
        #expect(grown.manifestDigest == extendedDescriptor.digest)
        #expect(registry.requests("POST", containing: "/blobs/uploads/").count == uploadsAfterFirst + 2)
    }

    @Test("a registry's errors[].message reaches the error, with the registry, method and path")
    func registryErrorsAreReported() async throws {
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let target = try ref("\(registry.host)/shop/web:t1")
        let client = RegistryClient(reference: target, retryDelays: [])
        let (_, _, data) = try fixture.layout.manifest(tag: "base")
        // No blobs were pushed: the registry refuses a manifest that names them.
        let error = await #expect(throws: KilnError.self) {
            try await client.putManifest(data: data, mediaType: OCIMediaType.manifest, reference: "t1")
        }
        let message = error?.description ?? ""
        #expect(message.hasPrefix("registry \(registry.host): PUT /v2/shop/web/manifests/t1: HTTP 400: "))
        #expect(message.contains("blob unknown"))
        #expect(error?.code == .io)
    }

    @Test("a bearer-token registry: the right credentials push and each scope's token is fetched once")
    func bearerTokenAuth() async throws {
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let proxy = try AuthProxy(upstream: registry, user: "ci", password: "s3cret", mode: "bearer")
        defer { proxy.stop() }
        let target = try ref("\(proxy.host)/shop/web:t1")
        let client = RegistryClient(reference: target, username: "ci", password: "s3cret", chunkSize: 64 << 10)
        let report = try await Registry.push(layout: fixture.layout, tag: "base", to: target, client: client)
        #expect(report.uploaded.count == 2)
        let (descriptor, _, _) = try fixture.layout.manifest(tag: "base")
        #expect(report.manifestDigest == descriptor.digest)
        let tokens = proxy.log.split(separator: "\n").filter { $0.hasPrefix("TOKEN ") }
        #expect(
            tokens.sorted() == [
                "TOKEN scope=repository:shop/web:pull granted=True",
                "TOKEN scope=repository:shop/web:pull,push granted=True",
            ])
        // Went through the proxy, which hands out relative Locations.
        #expect(registry.requests("PATCH", containing: "/v2/shop/web/blobs/uploads/").count >= 5)

        let again = try await Registry.push(
            layout: fixture.layout, tag: "base", to: try ref("\(proxy.host)/shop/web:t2"), client: client)
        #expect(again.uploaded.isEmpty)
        #expect(proxy.log.split(separator: "\n").filter { $0.hasPrefix("TOKEN ") }.count == 2)
    }

    @Test("a bearer-token registry refuses wrong credentials, and the error names the registry")
    func bearerTokenWrongCredentials() async throws {
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let proxy = try AuthProxy(upstream: registry, user: "ci", password: "s3cret", mode: "bearer")
        defer { proxy.stop() }
        let target = try ref("\(proxy.host)/shop/web:t1")
        let wrong = RegistryClient(reference: target, username: "ci", password: "guess")
        let error = await #expect(throws: KilnError.self) {
            try await Registry.push(layout: fixture.layout, tag: "base", to: target, client: wrong)
        }
        let message = error?.description ?? ""
        #expect(message.hasPrefix("registry \(proxy.host): token from 127.0.0.1/token: HTTP 401"))
        #expect(message.contains("invalid username or password"))
        #expect(message.contains("credentials for ci were rejected"))

        let anonymous = RegistryClient(reference: target)
        let none = await #expect(throws: KilnError.self) {
            try await Registry.push(layout: fixture.layout, tag: "base", to: target, client: anonymous)
        }
        #expect(none?.description.contains("KILN_REGISTRY_USER") == true)
        #expect(registry.requests("POST", containing: "/blobs/uploads/").isEmpty)
    }

    @Test("a Basic-auth registry: the right credentials push, wrong ones fail naming the registry")
    func basicAuth() async throws {
        let fixture = try await TestLayout.make()
        defer { fixture.remove() }
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let proxy = try AuthProxy(upstream: registry, user: "ci", password: "s3cret", mode: "basic")
        defer { proxy.stop() }
        let target = try ref("\(proxy.host)/shop/web:t1")
        let right = RegistryClient(reference: target, username: "ci", password: "s3cret")
        let report = try await Registry.push(layout: fixture.layout, tag: "base", to: target, client: right)
        #expect(report.uploaded.count == 2)
        // One challenge, then Basic is sent up front.
        #expect(proxy.log.split(separator: "\n").filter { $0.hasPrefix("DENIED ") }.count == 1)

        let wrong = RegistryClient(reference: target, username: "ci", password: "guess")
        let error = await #expect(throws: KilnError.self) {
            try await Registry.push(layout: fixture.layout, tag: "extended", to: target, client: wrong)
        }
        let message = error?.description ?? ""
        #expect(message.hasPrefix("registry \(proxy.host): HEAD /v2/shop/web/blobs/sha256:"))
        #expect(message.contains("HTTP 401: authentication required (credentials for ci were rejected)"))
    }
}

@Suite("Registry references and credentials")
struct RegistryReferenceTests {
    @Test("good references parse into host, repository, tag and digest, with the scheme the host calls for")
    func goodReferences() throws {
        let local = try ref("127.0.0.1:5000/shop/web:t1")
        #expect(local.host == "127.0.0.1:5000")
        #expect(local.repository == "shop/web")
        #expect(local.tag == "t1")
        #expect(local.digest == nil)
        #expect(local.scheme == "http")
        #expect(local.description == "127.0.0.1:5000/shop/web:t1")

        let plain = try ref("registry.example.internal/team/app")
        #expect(plain.tag == "latest")
        #expect(plain.scheme == "https")
        #expect(try RegistryReference(parsing: "registry.example.internal/team/app", insecure: true).scheme == "http")
        #expect(try ref("localhost/a").scheme == "http")
        #expect(try ref("localhost:5000/a:b").host == "localhost:5000")
        let six = try ref("[::1]:5000/x/y:v1.2_3-rc")
        #expect(six.host == "[::1]:5000")
        #expect(six.scheme == "http")
        #expect(six.tag == "v1.2_3-rc")
        #expect(try ref("[fd00::5]:443/x").scheme == "https")

        let hex = String(repeating: "ab", count: 32)
        let pinned = try ref("reg.internal:8443/a.b/c__d/e-f---g:_tag@sha256:\(hex)")
        #expect(pinned.repository == "a.b/c__d/e-f---g")
        #expect(pinned.tag == "_tag")
        #expect(pinned.digest == "sha256:\(hex)")
        let byDigest = try ref("reg.internal/a@sha256:\(hex)")
        #expect(byDigest.tag == nil)
        #expect(byDigest.manifestReference == "sha256:\(hex)")
        #expect(try ref("reg.internal/" + String(repeating: "a", count: 255)).repository.count == 255)
    }

    @Test(
        "bad references are refused as invalid input, saying what is wrong",
        arguments: [
            ("", "it is empty"),
            ("shop/web:t1", "no registry host"),
            ("web:t1", "no registry host or no repository"),
            ("127.0.0.1:5000", "no registry host or no repository"),
            ("127.0.0.1:5000/", "no repository after the host"),
            ("127.0.0.1:5000/Shop/web:t1", "has uppercase letters"),
            ("127.0.0.1:5000/shop//web", "repository component \"\""),
            ("127.0.0.1:5000/shop/-web", "repository component \"-web\""),
            ("127.0.0.1:5000/shop/we..b", "repository component \"we..b\""),
            ("127.0.0.1:5000/shop/we___b", "repository component \"we___b\""),
            ("127.0.0.1:5000/shop/web:", "tag \"\""),
            ("127.0.0.1:5000/shop/web:.t", "tag \".t\""),
            ("127.0.0.1:5000/shop/web:t!", "tag \"t!\""),
            ("127.0.0.1:5000/shop/web:" + String(repeating: "t", count: 129), "1 to 128"),
            ("127.0.0.1:5000/shop/web@sha256:abc", "is not sha256:<64"),
            ("127.0.0.1:5000/shop/web@md5:" + String(repeating: "a", count: 32), "is not sha256:<64"),
            ("127.0.0.1:99999/shop/web", "port \"99999\""),
            ("127.0.0.1:port/shop/web", "port \"port\""),
            ("-bad.host/shop/web", "is not a host name"),
            ("[::1/shop/web", "no closing ']'"),
            ("http://127.0.0.1:5000/shop/web", "without a scheme"),
            ("reg.internal/" + String(repeating: "a", count: 256), "longer than 255"),
        ])
    func badReferences(text: String, expected: String) throws {
        let error = #expect(throws: KilnError.self) { try RegistryReference(parsing: text) }
        #expect(error?.code == .invalidInput)
        #expect(error?.description.contains(expected) == true, "\(error?.description ?? "no error")")
        #expect(error?.description.contains("\"\(text)\"") == true)
    }

    @Test("credentials come from KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD, both or neither")
    func environmentCredentials() throws {
        #expect(try RegistryCredentials.fromEnvironment([:]) == nil)
        #expect(
            try RegistryCredentials.fromEnvironment(["KILN_REGISTRY_USER": "ci", "KILN_REGISTRY_PASSWORD": "pw"])
                == RegistryCredentials(username: "ci", password: "pw"))
        let error = #expect(throws: KilnError.self) {
            try RegistryCredentials.fromEnvironment(["KILN_REGISTRY_USER": "ci"])
        }
        #expect(error?.code == .invalidInput)
        #expect(error?.description.contains("KILN_REGISTRY_PASSWORD") == true)
    }

    @Test("WWW-Authenticate challenges parse with commas inside quoted scopes and several challenges in one header")
    func challenges() {
        let parsed = WWWAuthenticate.parse(
            #"Bearer realm="http://127.0.0.1:1/token",service="reg",scope="repository:a/b:pull,push", Basic realm="x\"y""#)
        #expect(parsed.map(\.scheme) == ["bearer", "basic"])
        #expect(parsed.first?.parameters["scope"] == "repository:a/b:pull,push")
        #expect(parsed.first?.parameters["service"] == "reg")
        #expect(parsed.first?.parameters["realm"] == "http://127.0.0.1:1/token")
        #expect(parsed.last?.parameters["realm"] == "x\"y")
        #expect(WWWAuthenticate.parse("").isEmpty)
        #expect(WWWAuthenticate.parse("Basic").first?.scheme == "basic")
    }
}
