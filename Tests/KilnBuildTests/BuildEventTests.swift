import Foundation
import KilnCore
import KilnModel
import KilnStore
import Testing

@testable import KilnBuild

@Suite("Build events and origin (fake provider)")
struct BuildEventTests {
    /// The steps one image's events went through, checking that each started step finished
    /// before the next began.
    static func stages(_ events: [BuildEvent], family: String) throws -> [(step: String, ok: Bool)] {
        var stages: [(String, Bool)] = []
        var open: String?
        for event in events where event.family == family {
            switch event.event {
            case .stepStarted:
                #expect(open == nil, "\(event.step ?? "") started while \(open ?? "") was open")
                open = event.step
            case .stepFinished:
                let step = try #require(open)
                #expect(event.step == step)
                #expect((event.seconds ?? -1) >= 0)
                stages.append((step, event.ok == true))
                open = nil
            default: break
            }
        }
        #expect(open == nil)
        return stages
    }

    @Test("a build reports build_started, every stage started and finished, its output and image_ready, in order")
    func successfulBuildEvents() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let reporter = CollectingReporter()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: reporter)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        let events = reporter.events.value
        for image in images {
            let mine = events.filter { $0.family == image.family }
            #expect(mine.first?.event == .buildStarted)
            #expect(mine.last?.event == .imageReady)
            #expect(mine.last?.image == image.name)
            #expect(mine.last?.digest == image.digest)
            #expect((mine.first?.reasons ?? []).count > 0)
            let build = try #require(mine.first?.build)
            #expect(mine.allSatisfy { $0.build == build })
            #expect(mine.contains { $0.event == .output && $0.source == "kiln" })
            // Output lines carry the stage they were printed in.
            #expect(mine.contains { $0.event == .output && $0.source != "kiln" && $0.step == $0.source })
            #expect(mine.filter { $0.event == .output }.allSatisfy { $0.step != nil })
            let steps = try Self.stages(events, family: image.family).map(\.step)
            #expect(steps.first == (image.parent == nil ? "source" : "verify"))
            #expect(Array(steps.dropFirst().prefix(1)) == ["boot"])
            #expect(Array(steps.suffix(4)) == ["package manifest", "secret scan", "shutdown", "snapshot"])
            #expect(try Self.stages(events, family: image.family).allSatisfy(\.ok))
        }
        // Parents finish before their children start.
        let baseReady = try #require(events.firstIndex { $0.family == "base" && $0.event == .imageReady })
        let appStarted = try #require(events.firstIndex { $0.family == "app" && $0.event == .buildStarted })
        #expect(baseReady < appStarted)
        // The app's steps in template order, named by their titles, between boot and the manifest.
        let appSteps = try Self.stages(events, family: "app").map(\.step)
        #expect(appSteps.count == 3 + 4 + 2)
        #expect(appSteps.contains { $0.hasSuffix("file motd -> /etc/motd") })
        // Rebuilt with no change: only up_to_date events, naming the same images.
        let again = CollectingReporter()
        let rebuilt = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: again)
        _ = try await rebuilt.build(graph, secrets: set.sensitiveValues)
        #expect(again.events.value.map(\.event) == [.upToDate, .upToDate])
        #expect(again.events.value.map(\.image) == images.map(\.name))
    }

    @Test("a failed step reports step_finished not ok and a failed event naming the step, and no image_ready")
    func failedBuildEvents() async throws {
        let workspace = try Workspace(product: "echo FAIL-HERE")
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let reporter = CollectingReporter()
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: reporter)
        await #expect(throws: KilnError.self) { try await builder.build(graph, secrets: set.sensitiveValues) }
        let app = reporter.events.value.filter { $0.family == "app" }
        let failed = try #require(app.last)
        #expect(failed.event == .failed)
        #expect(failed.step?.contains("FAIL-HERE") == true)
        #expect(failed.text?.contains("exit status 3") == true)
        #expect(failed.cancelled == false)
        #expect(!app.contains { $0.event == .imageReady })
        let stages = try Self.stages(reporter.events.value, family: "app")
        #expect(stages.last?.ok == false)
        #expect(stages.last?.step == failed.step)
    }

    @Test("every event is one line of JSON with event, family and an ISO 8601 time")
    func eventJSONShape() throws {
        var event = BuildEvent(.output, family: "web", time: Date(timeIntervalSince1970: 1_800_000_000.25))
        event.build = "b1"
        event.source = "shell: echo \"hi\""
        event.text = "line with \"quotes\" and \n newline"
        let line = event.jsonLine()
        #expect(!line.contains("\n"))
        let object = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any])
        #expect(object["event"] as? String == "output")
        #expect(object["family"] as? String == "web")
        #expect(object["time"] as? String == "2027-01-15T08:00:00.250Z")
        #expect(object["text"] as? String == "line with \"quotes\" and \n newline")
        #expect(object["image"] == nil, "unset fields are left out, not null")
        #expect(Set(BuildEvent.Kind.allCases.map(\.rawValue)).count == BuildEvent.Kind.allCases.count)
    }

    @Test("the origin comes from GitLab CI, GitHub Actions and Jenkins variables, and from git outside CI")
    func originDetection() async throws {
        let gitlab = BuildOrigin.fromEnvironment(
            [
                "GITLAB_CI": "true", "CI": "true", "CI_COMMIT_SHA": "abc123", "CI_COMMIT_REF_NAME": "main",
                "CI_COMMIT_BRANCH": "main", "CI_PIPELINE_ID": "77", "CI_JOB_ID": "4242", "CI_JOB_NAME": "build:web",
                "CI_JOB_URL": "https://gitlab.example/shop/images/-/jobs/4242", "CI_PROJECT_PATH": "shop/images",
                "GITLAB_USER_LOGIN": "ada",
            ], host: "runner-1")
        #expect(gitlab.ci == "gitlab")
        #expect(gitlab.commit == "abc123" && gitlab.branch == "main" && gitlab.pipeline == "77" && gitlab.job == "4242")
        #expect(gitlab.jobName == "build:web" && gitlab.project == "shop/images" && gitlab.user == "ada")
        #expect(gitlab.jobURL == "https://gitlab.example/shop/images/-/jobs/4242")
        let github = BuildOrigin.fromEnvironment(
            [
                "GITHUB_ACTIONS": "true", "GITHUB_SHA": "def456", "GITHUB_REF_NAME": "release", "GITHUB_RUN_ID": "9",
                "GITHUB_RUN_ATTEMPT": "2", "GITHUB_JOB": "images", "GITHUB_SERVER_URL": "https://github.example",
                "GITHUB_REPOSITORY": "shop/images",
            ], host: "h")
        #expect(github.ci == "github" && github.commit == "def456" && github.branch == "release" && github.job == "9/2")
        #expect(github.jobURL == "https://github.example/shop/images/actions/runs/9")
        let jenkins = BuildOrigin.fromEnvironment(
            ["JENKINS_URL": "http://ci", "GIT_COMMIT": "0a0a", "GIT_BRANCH": "origin/main", "BUILD_ID": "12"], host: "h")
        #expect(jenkins.ci == "jenkins" && jenkins.commit == "0a0a" && jenkins.job == "12")
        #expect(BuildOrigin.fromEnvironment(["USER": "bob"], host: "h").ci == nil)

        // Outside CI: git, in a checkout of the templates.
        let dir = NSTemporaryDirectory() + "kiln-origin-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/images", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let git = { (args: [String]) async throws in
            try await ProcessRunner.check(
                "git", ["-C", dir, "-c", "user.name=t", "-c", "user.email=t@t", "-c", "init.defaultBranch=trunk"] + args)
        }
        _ = try await git(["init", "-q"])
        try "image: a\n".write(toFile: dir + "/images/a.yaml", atomically: true, encoding: .utf8)
        _ = try await git(["add", "."])
        _ = try await git(["commit", "-q", "-m", "one"])
        let head = try await git(["rev-parse", "HEAD"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let clean = await BuildOrigin.detect(templates: dir + "/images", environment: ["USER": "bob"])
        #expect(clean.commit == head && clean.branch == "trunk" && clean.dirty == false && clean.ci == nil)
        #expect(clean.user == "bob")
        // What a run's builds record: found on first use, then the same for every image.
        let source = OriginSource(templates: dir + "/images")
        let first = await source.value()
        #expect(first.commit == head && first.branch == "trunk")
        #expect(await source.value() == first)
        try "image: b\n".write(toFile: dir + "/images/a.yaml", atomically: true, encoding: .utf8)
        let dirty = await BuildOrigin.detect(templates: dir + "/images/a.yaml", environment: [:])
        #expect(dirty.commit == head && dirty.dirty == true)
        // In CI the variables win over a detached checkout's git.
        _ = try await git(["checkout", "-q", "--detach"])
        let detached = await BuildOrigin.detect(
            templates: dir + "/images", environment: ["GITLAB_CI": "true", "CI_COMMIT_SHA": head, "CI_COMMIT_REF_NAME": "main"])
        #expect(detached.branch == "main" && detached.commit == head)
        let outside = await BuildOrigin.detect(templates: NSTemporaryDirectory(), environment: [:])
        #expect(outside.commit == nil && outside.dirty == nil)
    }

    @Test("an image built with an origin records it in the catalog, and inspect --json shows it")
    func originRecorded() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        var options = BuildOptions()
        let given = BuildOrigin.fromEnvironment(
            ["GITLAB_CI": "true", "CI_COMMIT_SHA": "feedface", "CI_COMMIT_BRANCH": "main", "CI_JOB_ID": "31"], host: "runner-9")
        options.origin = OriginSource(given)
        let builder = Builder(store: workspace.store, provider: FakeProvider(), options: options, reporter: nil)
        let images = try await builder.build(graph, secrets: set.sensitiveValues).map(\.image)
        for image in images {
            #expect(try workspace.store.catalog.image(named: image.name)?.buildOrigin == given)
        }
        let inspect = try await CLI.kiln(["inspect", images[0].name, "--json", "--home", workspace.store.root])
        let object = try #require(try JSONSerialization.jsonObject(with: Data(inspect.stdout.utf8)) as? [String: Any])
        let origin = try #require(object["origin"] as? [String: Any])
        #expect(origin["commit"] as? String == "feedface")
        #expect(origin["branch"] as? String == "main")
        #expect(origin["ci"] as? String == "gitlab")
        #expect(origin["job"] as? String == "31")
        #expect(origin["host"] as? String == "runner-9")
        let text = try await CLI.kiln(["inspect", images[0].name, "--home", workspace.store.root])
        #expect(text.stdout.contains("commit feedface, branch main, gitlab job 31"))
    }
}

@Suite("kiln build --json from the command line (no VM)")
struct BuildJSONCLITests {
    static func events(_ stdout: String) throws -> [[String: Any]] {
        try stdout.split(separator: "\n").map { line in
            try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "not JSON: \(line)")
        }
    }

    @Test("kiln build --json prints only JSON lines: up_to_date per image, or a failed stage and a failed event with exit 1")
    func jsonStream() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        let (set, graph) = try workspace.graph()
        let images = try await Builder(store: workspace.store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
            .build(graph, secrets: set.sensitiveValues).map(\.image)
        let home = workspace.store.root
        let upToDate = try await CLI.kiln(["build", workspace.dir + "/t", "--json", "--home", home])
        #expect(upToDate.status == 0, "\(upToDate.stderr)")
        let quiet = try Self.events(upToDate.stdout)
        #expect(quiet.map { $0["event"] as? String } == ["up_to_date", "up_to_date"])
        #expect(quiet.map { $0["image"] as? String } == images.map(\.name))
        #expect(quiet.allSatisfy { ($0["time"] as? String)?.hasSuffix("Z") == true })

        // A damaged parent fails the child at its first stage, before any VM: the real binary's
        // stream for a failure.
        let disk = workspace.store.diskPath(of: images[0])
        try FileManager.default.setAttributes([.posixPermissions: 0o644], ofItemAtPath: disk)
        let handle = try #require(FileHandle(forWritingAtPath: disk))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("bit rot".utf8))
        try handle.close()
        let failing = try await CLI.kiln(["build", workspace.dir + "/t", "--json", "--force", "--only", "app", "--home", home])
        #expect(failing.status == 1)
        #expect(failing.stderr.contains("failed at verify"))
        let stream = try Self.events(failing.stdout)
        #expect(
            stream.map { $0["event"] as? String }.filter { $0 != "output" } == ["build_started", "step_started", "step_finished", "failed"])
        #expect(stream.last?["step"] as? String == "verify")
        #expect((stream.last?["text"] as? String)?.contains("is damaged") == true)
        #expect(stream.allSatisfy { $0["family"] as? String == "app" && $0["build"] as? String == stream[0]["build"] as? String })
        #expect(!failing.stdout.contains("hunter2"))
    }
}
