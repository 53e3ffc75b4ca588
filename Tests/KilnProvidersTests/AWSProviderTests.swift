import Foundation
import KilnCore
import KilnModel
import KilnTestSupport
import Testing

@testable import KilnProviders

/// kiln itself, building with `provider: aws` against a real moto_server (docs/providers.md).
/// moto's instances run nothing, so the AMI path is tested with templates without steps; the
/// steps' SSH path is qemu's, tested with real VMs.
final class AWSStore {
    let home = NSTemporaryDirectory() + "kiln-aws-" + UUID().uuidString
    let endpoint: URL
    let ec2: EC2Client

    init(endpoint: URL) throws {
        self.endpoint = endpoint
        try FileManager.default.createDirectory(atPath: home + "/t", withIntermediateDirectories: true)
        ec2 = EC2Client(
            configuration: AWSConfiguration(
                region: "us-east-1", endpoint: endpoint, credentials: AWSCredentials(accessKeyID: "testing", secretAccessKey: "testing")))
    }

    deinit { try? FileManager.default.removeItem(atPath: home) }

    var environment: [String: String] {
        [
            "AWS_ENDPOINT_URL": endpoint.absoluteString, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_CONFIG_FILE": "/nonexistent",
        ]
    }

    func kiln(_ arguments: [String]) async throws -> ProcessResult {
        try await KilnBinary.run(arguments + ["--home", home], environment: environment, timeout: .seconds(120))
    }

    func write(_ name: String, _ text: String) throws {
        try text.write(toFile: home + "/t/" + name, atomically: true, encoding: .utf8)
    }

    func inspect(_ name: String) async throws -> [String: Any] {
        let result = try await kiln(["inspect", name, "--json"])
        try #require(result.status == 0, "\(result.stderr)")
        return try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    /// An Amazon Linux AMI of moto's own catalogue to start a base from.
    func sourceAMI() async throws -> String {
        let images = try await ec2.describeImages(owners: ["amazon"], filters: ["name": ["amzn2-ami-hvm-*"]])
        return try #require(images.first?.id)
    }

    /// What a build left in EC2: its instances (by the kiln:build tag) and its key pair.
    func leftovers(build: String) async throws -> (running: [EC2Instance], keys: [String]) {
        let instances = try await ec2.describeInstances(filters: ["tag:kiln:build": [build]])
        return (instances.filter { $0.state != "terminated" }, try await ec2.describeKeyPairs(names: ["kiln-\(build)"]))
    }
}

// Serialized: moto_server's in-memory backend is not safe under concurrent requests (a
// DescribeImages beside a DeregisterImage answered HTTP 500 in a CI run).
@Suite("The aws provider against moto_server", .motoServer, .serialized)
struct AWSProviderTests {
    @Test(
        "a base on an AMI and a layer on it become AMIs tagged with kiln's name, family, version, state and build key; instances are terminated and key pairs deleted; deprecate degrades to the tag with a warning; gc deregisters the AMI and deletes its snapshots"
    )
    func amiPath() async throws {
        let store = try AWSStore(endpoint: try MotoServer.current().endpoint)
        let source = try await store.sourceAMI()
        try store.write("base.yaml", "image: ami-base\nfrom: {provider_image: \(source)}\nprovider: {aws: {instance_type: t3.small}}\n")
        try store.write("app.yaml", "image: ami-app\nfrom: {image: ami-base}\nprovider: aws\nlabels: {layer: app}\n")
        let build = try await store.kiln(["build", store.home + "/t"])
        #expect(build.status == 0, "\(build.stderr)")
        #expect(build.stderr.contains("launched i-") && build.stderr.contains("from \(source) in us-east-1"), "\(build.stderr)")

        var amis: [String] = []
        for family in ["ami-base", "ami-app"] {
            let image = try await store.inspect(family)
            let name = try #require(image["name"] as? String)
            let artifact = try #require(image["artifact"] as? [String: Any])
            let details = try #require(artifact["details"] as? [String: String])
            let ami = try #require(artifact["id"] as? String)
            #expect(image["provider"] as? String == "aws" && details["region"] == "us-east-1")
            let described = try #require(try await store.ec2.describeImage(ami), "\(ami) is not in EC2")
            #expect(described.state == "available")
            #expect(described.tags["kiln:name"] == name)
            #expect(described.tags["kiln:family"] == family)
            #expect(described.tags["kiln:version"] == image["version"] as? String)
            #expect(described.tags["kiln:state"] == "READY")
            #expect(described.tags["kiln:build-key"] == image["build_key"] as? String)
            #expect(details["snapshots"] == described.snapshotIDs.joined(separator: ","))
            let leftovers = try await store.leftovers(build: try #require(image["build_id"] as? String))
            #expect(leftovers.running.isEmpty && leftovers.keys.isEmpty, "\(family): \(leftovers)")
            amis.append(ami)
        }
        // The layer was launched from the base's AMI, not from the source.
        let appBuild = try #require(try await store.inspect("ami-app")["build_id"] as? String)
        let log = try await store.kiln(["logs", appBuild])
        #expect(log.stdout.contains("from \(amis[0]) in us-east-1"), "\(log.stdout)")

        let again = try await store.kiln(["build", store.home + "/t"])
        #expect(again.status == 0 && again.stdout.contains("up to date"), "\(again.stdout)")

        let app = try #require(try await store.inspect("ami-app")["name"] as? String)
        let deprecate = try await store.kiln(["deprecate", app])
        #expect(deprecate.status == 0, "\(deprecate.stderr)")
        #expect(deprecate.stderr.contains("does not support EnableImageDeprecation"), "\(deprecate.stderr)")
        #expect(try await store.ec2.describeImage(amis[1])?.tags["kiln:state"] == "DEPRECATED")

        #expect(try await store.kiln(["delete", app]).status == 0)
        #expect(try await store.ec2.describeImage(amis[1])?.tags["kiln:state"] == "DELETED")
        let snapshots = try #require(try await store.ec2.describeImage(amis[1])?.snapshotIDs)
        // Rotation dates the purge (the policy's purge_after); gc then carries it out.
        let rotate = try await store.kiln(["rotate", "--now", "2099-01-01"])
        #expect(rotate.status == 0, "\(rotate.stderr)")
        let gc = try await store.kiln(["gc", "--now", "2099-06-01"])
        #expect(gc.status == 0 && gc.stdout.contains("removed the disk of \(app)"), "\(gc.stdout) \(gc.stderr)")
        #expect(try await store.ec2.describeImage(amis[1]) == nil, "gc left the AMI registered")
        for snapshot in snapshots {
            await #expect(throws: EC2Error.self) { try await store.ec2.deleteSnapshot(snapshot) }
        }
        #expect(try await store.ec2.describeImage(amis[0]) != nil, "gc touched the base's AMI")
    }

    @Test(
        "a failed build terminates its instance and deletes its key pair: an AMI that does not exist, and Tests/Fixtures/greeter's steps, which cannot log in to moto's instance"
    )
    func failedBuilds() async throws {
        let store = try AWSStore(endpoint: try MotoServer.current().endpoint)
        try store.write("base.yaml", "image: gone\nfrom: {provider_image: ami-00000000000000000}\nprovider: aws\n")
        let missing = try await store.kiln(["build", store.home + "/t"])
        #expect(missing.status == 1 && missing.stderr.contains("InvalidAMIID"), "\(missing.stderr)")
        let missingBuild = try #require(
            missing.stderr.split(separator: "\n").first { $0.contains("full log: kiln logs ") }?.split(separator: " ").last)
        #expect(try await store.leftovers(build: String(missingBuild)).keys.isEmpty, "the key pair outlived a failed launch")

        // Tests/Fixtures/greeter, as the qemu and plugin tests build it, on an aws base: its steps
        // run over SSH, and moto's instance has an address nobody answers on, so the login fails.
        let source = try await store.sourceAMI()
        try store.write("base.yaml", "image: aws-base\nfrom: {provider_image: \(source)}\nprovider: aws\n")
        #expect(try await store.kiln(["build", store.home + "/t"]).status == 0)
        let greeter = KilnBinary.repositoryRoot + "/Tests/Fixtures/greeter"
        let stepped = try await store.kiln([
            "build", greeter, "--var", "provider=aws", "--var", "base=aws-base", "--boot-timeout", "4",
        ])
        #expect(stepped.status == 1 && stepped.stderr.contains("failed at provision[0] shell mkdir -p /etc/greeter"), "\(stepped.stderr)")
        #expect(stepped.stderr.contains("could not log in to i-"), "\(stepped.stderr)")
        let instances = try await store.ec2.describeInstances(filters: ["tag:kiln:family": ["greeter"]])
        #expect(instances.count == 1 && instances.allSatisfy { $0.state == "terminated" }, "\(instances)")
        let build = try #require(
            stepped.stderr.split(separator: "\n").first { $0.contains("full log: kiln logs ") }?.split(separator: " ").last)
        #expect(try await store.leftovers(build: String(build)).keys.isEmpty)
    }

    @Test("throttled and failing EC2 answers are retried with backoff, and the build says so")
    func throttling() async throws {
        let moto = try MotoServer.current()
        let proxy = try ThrottleProxy(upstream: moto, rules: ["RunInstances:2:throttle", "CreateImage:1:error500"])
        defer { proxy.stop() }
        let store = try AWSStore(endpoint: proxy.endpoint)
        let source = try await store.sourceAMI()
        try store.write("base.yaml", "image: busy\nfrom: {provider_image: \(source)}\nprovider: aws\n")
        let build = try await store.kiln(["build", store.home + "/t"])
        #expect(build.status == 0, "\(build.stderr)")
        #expect(proxy.lines("THROTTLED", "RunInstances").count == 2 && proxy.lines("FAILED", "CreateImage").count == 1)
        let retries = build.stderr.split(separator: "\n").filter { $0.contains("retrying in") }
        #expect(retries.count == 3, "\(build.stderr)")
        #expect(retries.first?.contains("EC2 RunInstances: RequestLimitExceeded (HTTP 503)") == true, "\(retries)")
        #expect(Set(proxy.tokens("RunInstances")).count == 1, "a retried RunInstances must keep its client token")
    }

    @Test("an AMI whose wait fails after CreateImage is deregistered with its snapshots, and the instance and key pair go too")
    func amiWaitFails() async throws {
        let moto = try MotoServer.current()
        // Five failed DescribeImages use up the wait's retries; the cleanup's own describe then passes.
        let proxy = try ThrottleProxy(upstream: moto, rules: ["DescribeImages:5:error500"])
        defer { proxy.stop() }
        let direct = try AWSStore(endpoint: moto.endpoint)
        let source = try await direct.sourceAMI()
        let store = try AWSStore(endpoint: proxy.endpoint)
        try store.write("base.yaml", "image: unlucky\nfrom: {provider_image: \(source)}\nprovider: aws\n")
        let build = try await store.kiln(["build", store.home + "/t"])
        #expect(build.status == 1 && build.stderr.contains("failed at snapshot"), "\(build.stderr)")
        #expect(build.stderr.contains("did not become available"), "\(build.stderr)")
        let made = try #require(
            build.stderr.split(separator: "\n").first { $0.contains("creating ami-") }?.split(separator: " ").first { $0.hasPrefix("ami-") }
        )
        #expect(try await direct.ec2.describeImage(String(made)) == nil, "\(made) is still registered")
        let buildID = try #require(
            build.stderr.split(separator: "\n").first { $0.contains("full log: kiln logs ") }?.split(separator: " ").last)
        let leftovers = try await direct.leftovers(build: String(buildID))
        #expect(leftovers.running.isEmpty && leftovers.keys.isEmpty, "\(leftovers)")
        #expect(try await direct.ec2.describeImages(owners: ["self"], filters: ["tag:kiln:family": ["unlucky"]]).isEmpty)
        let line = try #require(
            build.stderr.split(separator: "\n").first { $0.contains("deleted its snapshots: snap-") }, "\(build.stderr)")
        for snapshot in line.split(separator: " ").filter({ $0.hasPrefix("snap-") }) {
            await #expect(throws: EC2Error.self) {
                try await direct.ec2.deleteSnapshot(String(snapshot.trimmingCharacters(in: .punctuationCharacters)))
            }
        }
        #expect(try await store.kiln(["images"]).stdout.contains("unlucky") == false)
    }
}
