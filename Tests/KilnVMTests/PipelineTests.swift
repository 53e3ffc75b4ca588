import Foundation
import KilnCore
import KilnStore
import KilnTestSupport
import Testing
import Yams

/// Generates the GitLab child pipeline for `dir`, checks it against GitLab's schema, and runs
/// its jobs as GitLab would: every job whose needs are done starts, each its own process with
/// the CI variables a runner sets (and `environment`). Expects every job to succeed.
/// - Returns: the waves of jobs, and each job's CI_JOB_ID.
/// - Parameter homePerJob: each job runs with `KILN_HOME=$KILN_HOME_ROOT/build-FAMILY`, empty (runners that share nothing).
func runGitLabPipeline(
    _ dir: String, environment: [String: String], homePerJob: Bool = false
) async throws -> (waves: [[String]], jobIDs: [String: String]) {
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
                var runner = environment.merging(
                    [
                        "GITLAB_CI": "true", "CI": "true", "CI_JOB_ID": id, "CI_JOB_NAME": job, "CI_COMMIT_SHA": "c0ffee",
                        "CI_COMMIT_BRANCH": "main", "CI_PIPELINE_ID": "77",
                    ], uniquingKeysWith: { _, ci in ci })
                // `build-FAMILY`: apt, inside the bootstrap, cannot take a ':' in its paths.
                if homePerJob, let root = environment["KILN_HOME_ROOT"] {
                    runner["KILN_HOME"] = root + "/" + job.replacingOccurrences(of: ":", with: "-")
                }
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
        "examples/debian's pipeline on runners that share nothing: each job its own empty KILN_HOME, one PostgreSQL catalog, blobs in a token-auth registry; each job pulls only its chain; a second run boots nothing and uploads nothing; kill -9 during a push leaves no row naming a missing blob",
        .tags(.long))
    func gitLabPipelineOnRegistry() async throws {
        let server = try #require(
            ProcessInfo.processInfo.environment["KILN_TEST_POSTGRES"], "KILN_TEST_POSTGRES is not set: run the tests with make test")
        let name = "kiln_pipeline_" + UUID().uuidString.lowercased().replacingOccurrences(of: "-", with: "")
        let created = try await ProcessRunner.run(
            "psql", ["-v", "ON_ERROR_STOP=1", "-d", Self.libpqURL(server), "-c", "CREATE DATABASE \(name)"])
        try #require(created.status == 0, "\(created.stderr)")
        let catalog = server.replacingOccurrences(of: "/postgres?", with: "/\(name)?")
        let registry = try await LocalRegistry.start()
        defer { registry.remove() }
        let proxy = try AuthProxy(upstream: registry, user: "gitlab-ci-token", password: "job-token", mode: "bearer")
        defer { proxy.stop() }
        // A catalog of its own and a copy of the example: nothing built yet, the base bootstrapped by its job.
        let dir = NSTemporaryDirectory() + "kiln-registry-pipeline-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: Repo.root + "/examples/debian", toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let runners = dir + "-runners"
        defer { try? FileManager.default.removeItem(atPath: runners) }
        // What a GitLab runner sets; kiln finds its remote there ($CI_REGISTRY_IMAGE/kiln).
        let gitlab = [
            "KILN_CATALOG": catalog, "CI_REGISTRY_IMAGE": "\(proxy.host)/group/project", "CI_REGISTRY_USER": "gitlab-ci-token",
            "CI_REGISTRY_PASSWORD": "job-token",
        ]
        // Every job gets a KILN_HOME of its own, empty: `sh -ec` runs the job's script after this export.
        func runPipeline(_ round: String) async throws -> [String: String] {
            let environment = gitlab.merging(["KILN_HOME_ROOT": runners + "/" + round, "KILN_HOME": runners + "/generate"]) { $1 }
            return try await runGitLabPipeline(dir, environment: environment, homePerJob: true).jobIDs
        }
        let jobIDs = try await runPipeline("first")
        let kiln = { (home: String, arguments: [String]) async throws -> ProcessResult in
            try await ProcessRunner.run(
                Repo.kiln, arguments,
                environment: [
                    "KILN_HOME": home, "KILN_CATALOG": catalog, "KILN_REMOTE": "oci://\(proxy.host)/group/project/kiln",
                    "KILN_REGISTRY_USER": "gitlab-ci-token", "KILN_REGISTRY_PASSWORD": "job-token",
                ], timeout: .seconds(1800))
        }
        let families = ["debian-12-base", "debian-12-nginx", "shop-web"]
        var images: [String: [String: Any]] = [:]
        for family in families {
            let listing = try await kiln(runners + "/look", ["images", "--family", family, "--json"])
            let rows = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
            #expect(rows.count == 1, "\(family) built \(rows.count) times")
            images[family] = rows.first
            #expect((rows.first?["origin"] as? [String: Any])?["job"] as? String == jobIDs["build:\(family)"])
        }
        // Each job's store holds its chain and its own image, nothing else.
        let digest = { (family: String) in images[family]?["digest"] as? String ?? "?" }
        let source = try #require(
            try Catalog.open(catalog, store: runners + "/look").image(named: images["debian-12-base"]?["name"] as? String ?? "")?
                .backingDigest)
        let chains = [
            "debian-12-base": [source, digest("debian-12-base")],
            "debian-12-nginx": [source, digest("debian-12-base"), digest("debian-12-nginx")],
            "shop-web": [source, digest("debian-12-base"), digest("debian-12-nginx"), digest("shop-web")],
        ]
        for (family, chain) in chains {
            let held = try FileManager.default.contentsOfDirectory(atPath: "\(runners)/first/build-\(family)/images")
                .filter { !$0.hasPrefix(".") }
            #expect(Set(held) == Set(chain), "\(family)'s runner holds \(held)")
        }
        // A second run of the pipeline, on new runners: every job up to date, nothing booted or uploaded.
        let mark = proxy.log.split(separator: "\n").count
        _ = try await runPipeline("second")
        let writes = proxy.log.split(separator: "\n").dropFirst(mark).filter {
            $0.contains(" PUT ") || $0.contains(" POST ") || $0.contains(" PATCH ")
        }
        #expect(writes.isEmpty, "the second run wrote to the registry: \(writes)")
        for family in families {
            let held = (try? FileManager.default.contentsOfDirectory(atPath: "\(runners)/second/build-\(family)/images")) ?? []
            #expect(held.filter { !$0.hasPrefix(".") }.isEmpty, "\(family)'s second runner fetched \(held)")
            // A build would have archived its log.
            let logs = (try? FileManager.default.contentsOfDirectory(atPath: "\(runners)/second/build-\(family)/logs")) ?? []
            #expect(logs.isEmpty, "\(family)'s second runner built: \(logs)")
        }
        // The whole graph from yet another empty store: up to date, and verify checks the remote.
        let whole = try await kiln(runners + "/look", ["build", dir])
        #expect(whole.status == 0, "\(whole.stderr.suffix(2000))")
        #expect(whole.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("up to date: ") }, "\(whole.stdout)")
        let verify = try await kiln(runners + "/look", ["verify"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")

        // kill -9 between a push's layers and its manifest: no catalog row names the blob.
        let killed = runners + "/killed"
        let fired = Locked(false)
        let pattern = "\(Repo.kiln) build \(dir) --only shop-web --force"
        let build = try await ProcessRunner.run(
            Repo.kiln, ["build", dir, "--only", "shop-web", "--force"],
            environment: [
                "KILN_HOME": killed, "KILN_CATALOG": catalog, "KILN_REMOTE": "oci://\(proxy.host)/group/project/kiln",
                "KILN_REGISTRY_USER": "gitlab-ci-token", "KILN_REGISTRY_PASSWORD": "job-token", "KILN_TEST_DELAY_PUSH_MS": "6000",
            ], timeout: .seconds(900)
        ) { line in
            guard line.text.contains("kiln: pushing to"), !fired.value else { return }
            fired.set(true)
            Task {
                try await Task.sleep(for: .seconds(3))
                _ = try await ProcessRunner.run("pkill", ["-KILL", "-f", pattern])
            }
        }
        #expect(build.status == 137, "\(build.stderr.suffix(2000))")
        let after = try await kiln(runners + "/look", ["images", "--family", "shop-web", "--json"])
        #expect((try JSONSerialization.jsonObject(with: Data(after.stdout.utf8)) as? [Any])?.count == 1, "\(after.stdout)")
        let again = try await kiln(runners + "/look", ["verify"])
        #expect(again.status == 0, "\(again.stdout)\(again.stderr)")
    }

    /// kiln's `postgres://…?host=/dir` as psql reads it.
    static func libpqURL(_ url: String) -> String {
        url.replacingOccurrences(of: "postgres://", with: "postgresql://").replacingOccurrences(of: "@localhost/", with: "@/")
    }
}
