import Foundation
import KilnCore
import KilnModel
import KilnStore
import Testing

extension VMBuildTests {
    /// Where kiln is killed: right after it logs one of these lines, plus a seeded delay. They
    /// cover the boot, each step, the shutdown, the snapshot (seal) and the catalog write.
    static let killPhases: [(marker: String, maxDelayMs: UInt64)] = [
        ("kiln: booting VM", 3_000), ("kiln: SSH is up", 300), ("kiln: step provision[0]", 1_500),
        ("kiln: step provision[1]", 200), ("kiln: step provision[2]", 1_000), ("kiln: removing build credentials", 300),
        ("kiln: VM stopped after", 20), ("kiln: sealed disk", 1_500), ("kiln: image ready", 5), ("kiln: building", 200),
    ]

    @Test(
        "kill -9 at 12 seeded points of a build: nothing READY is lost or damaged, no qemu or ssh survives the next kiln, a rerun builds",
        .tags(.long))
    func killPoints() async throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["KILN_KILL_SEED"].flatMap { UInt64($0) } ?? 20_261_123
        let count = environment["KILN_KILL_POINTS"].flatMap { Int($0) } ?? 12
        let dir = try await exampleAndScratchDirectory("kill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "payload\n".write(toFile: dir + "/payload.txt", atomically: true, encoding: .utf8)
        try """
        image: killed-app
        from: {image: debian-12-base}
        provision:
          - shell: echo first step; sleep 1
          - file: {src: payload.txt, dest: /etc/killed-payload}
          - shell: dd if=/dev/urandom of=/var/tmp/blob bs=1M count=10 status=none; sync
        """.write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        let home = SharedStore.shared.home
        // A linear congruential generator (Knuth's constants): the seed names the same points everywhere.
        var state = seed
        func nextRandom(_ bound: UInt64) -> UInt64 {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return (state >> 33) % max(bound, 1)
        }
        var survived = 0
        var killed = 0
        var report: [String] = []
        for index in 0..<count {
            let phase = Self.killPhases[index % Self.killPhases.count]
            let delay = nextRandom(phase.maxDelayMs + 1)
            let fired = Locked(false)
            let pattern = "\(Repo.kiln) build \(dir)"
            // The seal and the catalog write take milliseconds: kiln waits 2 s between them here
            // (a test-only delay), so a kill after "sealed disk" lands before the image is named.
            let build = try await ProcessRunner.run(
                // Cold boots, whose phases the markers name (WarmVMTests kills a warm snapshot's save).
                Repo.kiln, ["build", dir, "--force", "--no-warm", "--home", home], environment: ["KILN_TEST_DELAY_COMMIT_MS": "2000"],
                timeout: .seconds(900)
            ) { line in
                guard line.text.contains(phase.marker), !fired.value else { return }
                fired.set(true)
                Task {
                    try await Task.sleep(for: .milliseconds(delay))
                    _ = try await ProcessRunner.run("pkill", ["-KILL", "-f", pattern])
                }
            }
            if build.status == 137 { killed += 1 }
            // The next kiln finds the dead build, ends what it left running, and the store checks out.
            let verify = try await SharedStore.shared.kiln(["verify"])
            let leftovers = try await survivors(home: home)
            let ok = verify.status == 0 && leftovers.isEmpty && (build.status == 137 || build.status == 0)
            if ok { survived += 1 }
            report.append("\(index): after '\(phase.marker)' +\(delay) ms -> exit \(build.status), verify \(verify.status)")
            #expect(verify.status == 0, "kill point \(index) (\(phase.marker) +\(delay) ms): \(verify.stdout)\(verify.stderr)")
            // A blob sealed but never named was removed by the recovery, not left as garbage.
            #expect(!verify.stdout.contains("blob no image or source names"), "kill point \(index): \(verify.stdout)")
            #expect(leftovers.isEmpty, "kill point \(index): still running after the next kiln: \(leftovers)")
            #expect(build.status == 137 || build.status == 0, "kill point \(index): \(build.stderr.suffix(2000))")
        }
        // Every interrupted build is on record as ended, none as running.
        let running = try Catalog(path: home + "/catalog.sqlite").builds(status: .running)
        #expect(running.isEmpty, "builds left as running: \(running.map(\.id))")
        let rerun = try await SharedStore.shared.kiln(["build", dir, "--force"])
        #expect(rerun.status == 0, "\(rerun.stderr.suffix(2000))")
        // The last phases last milliseconds: some builds finish before the kill lands.
        #expect(killed >= count - 4, "only \(killed) of \(count) kill points hit a running kiln")
        let verify = try await SharedStore.shared.kiln(["verify"])
        #expect(verify.status == 0, "\(verify.stdout)")
        print(
            "kill points: \(count) tried (seed \(seed), KILN_KILL_SEED/KILN_KILL_POINTS to change), \(killed) killed kiln mid-build, \(survived) left a verified store and no process behind; rerun \(rerun.status == 0 ? "built" : "FAILED")\n  "
                + report.joined(separator: "\n  "))
    }

    /// QEMU or ssh processes of killed-app builds still running (QEMU is named kiln-BUILDID;
    /// ssh carries the build's key path).
    func survivors(home: String, family: String = "killed-app") async throws -> [String] {
        var found: [String] = []
        for _ in 0..<20 {
            let result = try await ProcessRunner.run("pgrep", ["-a", "-f", "kiln-[0-9T]+-\(family)|builds/[^ ]*\(family)"])
            found = result.stdout.split(separator: "\n").map(String.init).filter { !$0.contains("pgrep") }
            if found.isEmpty { return [] }
            try await Task.sleep(for: .milliseconds(100))
        }
        return found
    }
}

extension Tag {
    /// Long-running tests: part of `make test`, so .ci/run runs them.
    @Tag static var long: Self
}

extension VMBuildTests {
    @Test("two kiln build processes on one store and graph: the image is built once, the other finds it up to date")
    func concurrentProcesses() async throws {
        let dir = try await exampleAndScratchDirectory("twin")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: twin-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: echo twin\n"
            .write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        async let first = SharedStore.shared.kiln(["build", dir])
        async let second = SharedStore.shared.kiln(["build", dir])
        let results = try await [first, second]
        #expect(results.allSatisfy { $0.status == 0 }, "\(results.map(\.stderr))")
        #expect(results.filter { $0.stdout.contains("built twin-app-v") }.count == 1, "\(results.map(\.stdout))")
        #expect(results.filter { $0.stdout.contains("up to date: twin-app-v") }.count == 1, "\(results.map(\.stdout))")
        #expect(results.contains { $0.stderr.contains("waiting for another kiln process that is building twin-app") })
        let images = try await SharedStore.shared.kiln(["images", "--family", "twin-app", "--json"])
        let list = try #require(try JSONSerialization.jsonObject(with: Data(images.stdout.utf8)) as? [Any])
        #expect(list.count == 1)
        let verify = try await SharedStore.shared.kiln(["verify"])
        #expect(verify.status == 0, "\(verify.stdout)")
    }
}

extension VMBuildTests {
    @Test(
        "kill -9 during the source bootstrap: mmdebstrap is stopped, nothing stays mounted, the store verifies, a rerun bootstraps and builds",
        .tags(.long))
    func killDuringBootstrap() async throws {
        let home = SharedStore.shared.home
        let dir = try await exampleAndScratchDirectory("killsource")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // Another package list than the example's: a source disk of its own, bootstrapped here.
        try "image: fresh-base\nfrom:\n  debootstrap: {suite: bookworm, include: [file]}\nprovision:\n  - shell: file --version\n"
            .write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        let pattern = "\(Repo.kiln) build \(dir)"
        // Kill points follow mmdebstrap's own progress lines, not the clock: a warm package cache
        // makes the bootstrap fast enough that a fixed delay can land after it (seen in CI).
        // Inside the chroot (proc and sys mounted), then in the customize hook writing the disk.
        for (stage, delay) in [("installing remaining packages inside the chroot", 2), ("running --customize-hook", 1)] {
            let fired = Locked(false)
            let build = try await ProcessRunner.run(Repo.kiln, ["build", dir, "--home", home], timeout: .seconds(900)) { line in
                guard line.text.contains("debootstrap: I: \(stage)"), !fired.value else { return }
                fired.set(true)
                Task {
                    try await Task.sleep(for: .seconds(delay))
                    _ = try await ProcessRunner.run("pkill", ["-KILL", "-f", pattern])
                }
            }
            #expect(fired.value, "mmdebstrap never printed '\(stage)': \(build.stderr.suffix(1500))")
            #expect(build.status == 137, "kill \(delay) s after '\(stage)': \(build.stderr.suffix(1500))")
            let verify = try await SharedStore.shared.kiln(["verify"])
            #expect(verify.status == 0, "\(verify.stdout)")
            #expect(verify.stderr.contains("was interrupted at source"), "\(verify.stderr)")
            // An exited mmdebstrap may linger as a zombie until its new parent waits for it: not running.
            let bootstraps = try await ProcessRunner.run("pgrep", ["-a", "mmdebstrap"])
            let running = bootstraps.stdout.split(separator: "\n").filter { !$0.contains("<defunct>") }
            #expect(running.isEmpty, "mmdebstrap outlived the recovery: \(running)")
            let mounts = try String(contentsOfFile: "/proc/self/mountinfo", encoding: .utf8)
            #expect(!mounts.contains(home + "/"), "mounts left under the store: \(mounts)")
            let staged = try FileManager.default.contentsOfDirectory(atPath: home + "/images").filter { $0.hasPrefix(".tmp-") }
            #expect(staged.isEmpty, "\(staged)")
        }
        let rerun = try await SharedStore.shared.kiln(["build", dir])
        #expect(rerun.status == 0, "\(rerun.stderr.suffix(2000))")
        #expect(rerun.stdout.contains("built fresh-base-v"))
    }

    @Test("a VM that hangs at shutdown is killed at --shutdown-timeout; the build fails at shutdown and its log says why")
    func hungShutdown() async throws {
        let home = SharedStore.shared.home
        let dir = try await exampleAndScratchDirectory("stuck")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: stuck-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: echo stuck\n"
            .write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        let fired = Locked(false)
        let build = try await ProcessRunner.run(
            Repo.kiln, ["build", dir, "--shutdown-timeout", "5", "--home", home], timeout: .seconds(600)
        ) { line in
            guard line.text.contains("kiln: removing build credentials and stopping the VM"), !fired.value else { return }
            fired.set(true)
            // Freeze the guest as it is told to stop: QEMU runs none of it any more.
            Task { _ = try await ProcessRunner.run("pkill", ["-STOP", "-f", "kiln-[0-9T]+-stuck-app"]) }
        }
        #expect(build.status == 1)
        #expect(build.stderr.contains("failed at shutdown"), "\(build.stderr)")
        #expect(build.stderr.contains("within 5 s (--shutdown-timeout)"), "\(build.stderr)")
        let qemus = try await ProcessRunner.run("pgrep", ["-f", "kiln-[0-9T]+-stuck-app"])
        #expect(qemus.stdout.isEmpty, "the frozen VM outlived its build: \(qemus.stdout)")
        let images = try await SharedStore.shared.kiln(["images", "--family", "stuck-app"])
        #expect(!images.stdout.contains("stuck-app-v"))
    }
}
