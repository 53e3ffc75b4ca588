import Foundation
import KilnCore
import Testing
import Yams

extension VMBuildTests {
    @Test(
        "the generated GitLab pipeline, its jobs run wave by wave as separate kiln processes on one store, ends with the images one kiln build makes",
        .tags(.long))
    func gitLabPipelineJobsInOrder() async throws {
        let home = SharedStore.shared.home
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
        let generated = try await ProcessRunner.run(Repo.kiln, ["ci", "gitlab", dir, "--kiln", Repo.kiln, "--promote", "dev"])
        try #require(generated.status == 0, "\(generated.stderr)")
        // Beside the template directory, not in it: every YAML file in it is a template.
        let child = dir + "-child-pipeline.yml"
        defer { try? FileManager.default.removeItem(atPath: child) }
        try generated.stdout.write(toFile: child, atomically: true, encoding: .utf8)
        let schema = try await ProcessRunner.run(
            "check-jsonschema", ["--builtin-schema", "vendor.gitlab-ci", child], timeout: .seconds(120))
        #expect(schema.status == 0, "\(schema.stdout)\(schema.stderr)")

        // Run the jobs as GitLab would: every job whose needs are done starts, each its own
        // process, with the CI variables a runner sets.
        let pipeline = try #require(try Yams.load(yaml: generated.stdout) as? [String: Any])
        var pending = pipeline.compactMapValues { $0 as? [String: Any] }.filter { $0.key.hasPrefix("build:") }
        #expect(pending.count == 6)
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
                    let environment = [
                        "KILN_HOME": home, "GITLAB_CI": "true", "CI": "true", "CI_JOB_ID": id, "CI_JOB_NAME": job,
                        "CI_COMMIT_SHA": "c0ffee", "CI_COMMIT_BRANCH": "main", "CI_PIPELINE_ID": "77",
                    ]
                    group.addTask {
                        (
                            job,
                            try await ProcessRunner.run(
                                "sh", ["-ec", script.joined(separator: "\n")], environment: environment, timeout: .seconds(1800))
                        )
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
        #expect(
            waves == [
                ["build:debian-12-base"], ["build:debian-12-nginx"], ["build:pipe-left", "build:pipe-right", "build:shop-web"],
                ["build:pipe-top"],
            ])

        // One kiln build of the same graph now has nothing to do: the jobs made its images.
        let whole = try await SharedStore.shared.kiln(["build", dir])
        #expect(whole.status == 0, "\(whole.stderr.suffix(2000))")
        #expect(whole.stdout.split(separator: "\n").count == 6)
        #expect(whole.stdout.split(separator: "\n").allSatisfy { $0.hasPrefix("up to date: ") }, "\(whole.stdout)")
        for name in ["left", "right", "top"] {
            let listing = try await SharedStore.shared.kiln(["images", "--family", "pipe-\(name)", "--json"])
            let images = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
            #expect(images.count == 1, "pipe-\(name) built \(images.count) times")
            let origin = images.first?["origin"] as? [String: Any]
            #expect(origin?["ci"] as? String == "gitlab")
            #expect(origin?["commit"] as? String == "c0ffee")
            #expect(origin?["job"] as? String == jobIDs["build:pipe-\(name)"])
            let dev = try await SharedStore.shared.kiln(["resolve", "pipe-\(name)@dev"])
            #expect(dev.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == images.first?["name"] as? String)
        }
        let verify = try await SharedStore.shared.kiln(["verify"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }
}
