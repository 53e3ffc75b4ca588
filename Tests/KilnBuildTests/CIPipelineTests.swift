import Foundation
import KilnBuild
import KilnCore
import KilnModel
import Testing
import Yams

/// `kiln ci gitlab`, checked with GitLab's own schema (check-jsonschema's vendored copy).
@Suite("GitLab child pipeline (no VM)")
struct CIPipelineTests {
    static func validate(_ file: String) async throws -> ProcessResult {
        guard let checker = ProcessRunner.find("check-jsonschema") else {
            Issue.record("check-jsonschema is not installed (make deps installs it from PyPI)")
            throw KilnError(.notFound, "check-jsonschema")
        }
        return try await ProcessRunner.run(checker, ["--builtin-schema", "vendor.gitlab-ci", file], timeout: .seconds(120))
    }

    static func scratch() throws -> String {
        let dir = NSTemporaryDirectory() + "kiln-ci-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        return dir
    }

    @Test("kiln ci gitlab examples/debian: one job per image, needs: follow the graph, GitLab's schema accepts it")
    func examplePipeline() async throws {
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let result = try await CLI.kiln(
            [
                "ci", "gitlab", CLI.root + "/examples/debian", "--tag", "kvm", "--promote", "dev", "--var", "release=2.0", "--image",
                "registry.example/kiln:1",
            ])
        #expect(result.status == 0, "\(result.stderr)")
        try result.stdout.write(toFile: dir + "/child.yml", atomically: true, encoding: .utf8)
        let check = try await Self.validate(dir + "/child.yml")
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")

        let pipeline = try #require(try Yams.load(yaml: result.stdout) as? [String: Any])
        let jobs = pipeline.filter { $0.key.hasPrefix("build:") }
        #expect(Set(jobs.keys) == ["build:debian-12-base", "build:debian-12-nginx", "build:shop-web"])
        func needs(_ job: String) -> [String] { (jobs[job] as? [String: Any])?["needs"] as? [String] ?? ["missing"] }
        #expect(needs("build:debian-12-base") == [])
        #expect(needs("build:debian-12-nginx") == ["build:debian-12-base"])
        #expect(needs("build:shop-web") == ["build:debian-12-nginx"])
        let script = (jobs["build:shop-web"] as? [String: Any])?["script"] as? [String]
        #expect(script == ["kiln build \(CLI.root)/examples/debian --only shop-web --junit kiln-junit.xml --var release=2.0 --promote dev"])
        // GitLab shows each job's build stages and image tests in the merge request, failed or not.
        let artifacts = (jobs["build:shop-web"] as? [String: Any])?["artifacts"] as? [String: Any]
        #expect(artifacts?["when"] as? String == "always")
        #expect((artifacts?["reports"] as? [String: Any])?["junit"] as? String == "kiln-junit.xml")
        #expect((jobs["build:shop-web"] as? [String: Any])?["tags"] as? [String] == ["kvm"])
        // GitLab's docker executor would hand the job's shell to an image's entrypoint: none is used.
        let image = (jobs["build:shop-web"] as? [String: Any])?["image"] as? [String: Any]
        #expect(image?["name"] as? String == "registry.example/kiln:1" && image?["entrypoint"] as? [String] == [""], "\(result.stdout)")

        // The checker does catch a broken pipeline: the test above could fail.
        try result.stdout.replacingOccurrences(of: "needs:", with: "needz:").write(
            toFile: dir + "/broken.yml", atomically: true, encoding: .utf8)
        #expect(try await Self.validate(dir + "/broken.yml").status != 0)
        // And a report GitLab does not know.
        try result.stdout.replacingOccurrences(of: "junit:", with: "junitt:").write(
            toFile: dir + "/broken-report.yml", atomically: true, encoding: .utf8)
        #expect(try await Self.validate(dir + "/broken-report.yml").status != 0)
    }

    @Test("examples/ci/gitlab-ci.yml is a valid GitLab pipeline that generates, triggers and promotes")
    func exampleParentPipeline() async throws {
        let file = CLI.root + "/examples/ci/gitlab-ci.yml"
        let check = try await Self.validate(file)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        let text = try String(contentsOfFile: file, encoding: .utf8)
        #expect(text.contains("kiln ci gitlab"))
        #expect(text.contains("--promote dev"))
        #expect(text.contains("kiln promote shop-web@dev --channel prod"))
        #expect(text.contains("$CI_PIPELINE_SOURCE == \"schedule\""))
    }

    @Test("ci gitlab refuses a sensitive --var (it would sit in the pipeline in clear) and a bad channel, with exit 2")
    func refusesSecretsAndBadInput() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let secret = try await CLI.kiln(["ci", "gitlab", workspace.dir + "/t", "--var", "token=s3cret"])
        #expect(secret.status == 2)
        #expect(secret.stderr.contains("KILN_VAR_token"))
        #expect(!secret.stdout.contains("s3cret"))
        let channel = try await CLI.kiln(["ci", "gitlab", workspace.dir + "/t", "--promote", "Prod!"])
        #expect(channel.status == 2)
        #expect(channel.stderr.contains("invalid channel name"))
        // An image outside the graph (from the catalog) is not a job to wait for.
        let dir = try Self.scratch()
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: leaf\nfrom: {image: app}\nprovision:\n  - shell: echo leaf\n".write(
            toFile: dir + "/leaf.yaml", atomically: true, encoding: .utf8)
        let missing = try await CLI.kiln(["ci", "gitlab", dir, "--home", dir + "/home"])
        #expect(missing.status == 2)
        #expect(missing.stderr.contains("leaf.yaml:2:"))
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
        _ = try await builder.build(graph, secrets: set.sensitiveValues)
        let onCatalog = try await CLI.kiln(["ci", "gitlab", dir, "--home", workspace.store.root])
        #expect(onCatalog.status == 0, "\(onCatalog.stderr)")
        let pipeline = try #require(try Yams.load(yaml: onCatalog.stdout) as? [String: Any])
        #expect((pipeline["build:leaf"] as? [String: Any])?["needs"] as? [String] == [])
    }
}
