import Foundation
import KilnCore
import Testing
import Yams

/// Generates the GitLab child pipeline for `dir`, checks it against GitLab's schema, and runs
/// its jobs as GitLab would: every job whose needs are done starts, each its own process with
/// the CI variables a runner sets (and `environment`). Expects every job to succeed.
/// - Returns: the waves of jobs, and each job's CI_JOB_ID.
func runGitLabPipeline(_ dir: String, environment: [String: String]) async throws -> (waves: [[String]], jobIDs: [String: String]) {
    let generated = try await ProcessRunner.run(
        Repo.kiln, ["ci", "gitlab", dir, "--kiln", Repo.kiln, "--promote", "dev"], environment: environment)
    try #require(generated.status == 0, "\(generated.stderr)")
    // Beside the template directory, not in it: every YAML file in it is a template.
    let child = dir + "-child-pipeline.yml"
    defer { try? FileManager.default.removeItem(atPath: child) }
    try generated.stdout.write(toFile: child, atomically: true, encoding: .utf8)
    let schema = try await ProcessRunner.run(
        "check-jsonschema", ["--builtin-schema", "vendor.gitlab-ci", child], timeout: .seconds(120))
    #expect(schema.status == 0, "\(schema.stdout)\(schema.stderr)")

    let pipeline = try #require(try Yams.load(yaml: generated.stdout) as? [String: Any])
    var pending = pipeline.compactMapValues { $0 as? [String: Any] }.filter { $0.key.hasPrefix("build:") }
    var done: Set<String> = []
    var waves: [[String]] = []
    var jobIDs: [String: String] = [:]
    while !pending.isEmpty {
        let wave = pending.filter { Set($0.value["needs"] as? [String] ?? []).isSubset(of: done) }.keys.sorted()
        try #require(!wave.isEmpty, "jobs wait for each other: \(pending.keys.sorted())")
        let results = try await withThrowingTaskGroup(of: (String, ProcessResult).self) { group in
            for job in wave {
                let script = try #require(pending[job]?["script"] as? [String])
                let id = String(1000 + waves.count * 10 + wave.firstIndex(of: job)!)
                jobIDs[job] = id
                let runner = environment.merging(
                    [
                        "GITLAB_CI": "true", "CI": "true", "CI_JOB_ID": id, "CI_JOB_NAME": job, "CI_COMMIT_SHA": "c0ffee",
                        "CI_COMMIT_BRANCH": "main", "CI_PIPELINE_ID": "77",
                    ], uniquingKeysWith: { _, ci in ci })
                group.addTask {
                    let result = try await ProcessRunner.run(
                        "sh", ["-ec", script.joined(separator: "\n")], environment: runner, timeout: .seconds(1800))
                    return (job, result)
                }
            }
            return try await group.reduce(into: [:]) { $0[$1.0] = $1.1 }
        }
        for (job, result) in results {
            #expect(result.status == 0, "\(job): \(result.stderr.suffix(2000))")
        }
        waves.append(wave)
        done.formUnion(wave)
        wave.forEach { pending[$0] = nil }
    }
    return (waves, jobIDs)
}

/// After the pipeline: one `kiln build` of the graph has nothing left to do, and each of
/// `families` has exactly one image, made by its own job and promoted to dev.
func expectPipelineResult(
    _ dir: String, families: [String], jobIDs: [String: String], environment: [String: String], imageCount: Int
) async throws {
    let kiln = { (arguments: [String]) async throws -> ProcessResult in
        try await ProcessRunner.run(Repo.kiln, arguments, environment: environment, timeout: .seconds(1800))
    }
    let whole = try await kiln(["build", dir])
    #expect(whole.status == 0, "\(whole.stderr.suffix(2000))")
    #expect(whole.stdout.split(separator: "\n").count == imageCount)
    #expect(whole.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("up to date: ") }, "\(whole.stdout)")
    for family in families {
        let listing = try await kiln(["images", "--family", family, "--json"])
        let images = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
        #expect(images.count == 1, "\(family) built \(images.count) times")
        let origin = images.first?["origin"] as? [String: Any]
        #expect(origin?["ci"] as? String == "gitlab")
        #expect(origin?["commit"] as? String == "c0ffee")
        #expect(origin?["job"] as? String == jobIDs["build:\(family)"])
        let dev = try await kiln(["resolve", "\(family)@dev"])
        #expect(dev.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == images.first?["name"] as? String)
    }
    let verify = try await kiln(["verify"])
    #expect(verify.status == 0, "\(verify.stdout)")
}

extension VMBuildTests {
    @Test(
        "the generated GitLab pipeline, its jobs run wave by wave as separate kiln processes on one store, ends with the images one kiln build makes",
        .tags(.long))
    func gitLabPipelineJobsInOrder() async throws {
        let dir = try await exampleAndScratchDirectory("pipeline")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The example graph (built already: its jobs find it up to date) plus two independent
        // layers on nginx, built at once by two jobs, and a product on one of them.
        for entry in try FileManager.default.contentsOfDirectory(atPath: Repo.root + "/examples/debian") {
            try FileManager.default.copyItem(atPath: Repo.root + "/examples/debian/" + entry, toPath: dir + "/" + entry)
        }
        let layers = [
            ("left", "from: {image: debian-12-nginx}\nprovision:\n  - shell: echo left > /etc/pipe-left\n"),
            ("right", "from: {image: debian-12-nginx}\nprovision:\n  - shell: echo right > /etc/pipe-right\n"),
            ("top", "from: {image: pipe-left}\nprovision:\n  - shell: echo top > /etc/pipe-top\n"),
        ]
        for (name, body) in layers {
            try "image: pipe-\(name)\n\(body)".write(toFile: dir + "/pipe-\(name).yaml", atomically: true, encoding: .utf8)
        }
        let environment = ["KILN_HOME": SharedStore.shared.home]
        let (waves, jobIDs) = try await runGitLabPipeline(dir, environment: environment)
        #expect(
            waves == [
                ["build:debian-12-base"], ["build:debian-12-nginx"], ["build:pipe-left", "build:pipe-right", "build:shop-web"],
                ["build:pipe-top"],
            ])
        try await expectPipelineResult(
            dir, families: ["pipe-left", "pipe-right", "pipe-top"], jobIDs: jobIDs, environment: environment, imageCount: 6)
    }

    @Test(
        "the pipeline's jobs on a PostgreSQL catalog: a base bootstrapped by one job, two layers built at once by two, every image once",
        .tags(.long))
    func gitLabPipelineOnPostgres() async throws {
        let server = try #require(
            ProcessInfo.processInfo.environment["KILN_TEST_POSTGRES"], "KILN_TEST_POSTGRES is not set: run the tests with make test")
        let name = "kiln_pipeline_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = try await ProcessRunner.run(
            "psql", ["-v", "ON_ERROR_STOP=1", "-d", Self.libpqURL(server), "-c", "CREATE DATABASE \(name)"])
        try #require(created.status == 0, "\(created.stderr)")
        let catalog = server.replacingOccurrences(of: "/postgres?", with: "/\(name)?")
        let dir = try await exampleAndScratchDirectory("pgpipeline")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // A catalog of its own: nothing in it yet, so the base is bootstrapped by its job.
        let templates = [
            ("pg-base", "from:\n  debootstrap: {suite: bookworm, variant: minbase}\nprovision:\n  - shell: echo base > /etc/pg-base\n"),
            ("pg-left", "from: {image: pg-base}\nprovision:\n  - shell: echo left > /etc/pg-left\n"),
            ("pg-right", "from: {image: pg-base}\nprovision:\n  - shell: echo right > /etc/pg-right\n"),
            ("pg-top", "from: {image: pg-left}\nprovision:\n  - shell: echo top > /etc/pg-top\n"),
        ]
        for (family, body) in templates {
            try "image: \(family)\n\(body)".write(toFile: dir + "/\(family).yaml", atomically: true, encoding: .utf8)
        }
        // A store of its own too (the runners' shared mount): one store, one catalog.
        let home = dir + "-home"
        defer { try? FileManager.default.removeItem(atPath: home) }
        let environment = ["KILN_HOME": home, "KILN_CATALOG": catalog]
        let (waves, jobIDs) = try await runGitLabPipeline(dir, environment: environment)
        #expect(waves == [["build:pg-base"], ["build:pg-left", "build:pg-right"], ["build:pg-top"]])
        try await expectPipelineResult(
            dir, families: templates.map(\.0), jobIDs: jobIDs, environment: environment, imageCount: 4)
        // The store's own SQLite file never held the catalog: the jobs shared the PostgreSQL one.
        let local = try await ProcessRunner.run(
            Repo.kiln, ["images", "--json", "--home", home, "--catalog", "sqlite:\(home)/catalog.sqlite"])
        #expect((try JSONSerialization.jsonObject(with: Data(local.stdout.utf8)) as? [Any])?.isEmpty == true, "\(local.stdout)")
    }

    /// kiln's `postgres://…?host=/dir` as psql reads it.
    static func libpqURL(_ url: String) -> String {
        url.replacingOccurrences(of: "postgres://", with: "postgresql://").replacingOccurrences(of: "@localhost/", with: "@/")
    }
}
