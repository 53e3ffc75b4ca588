import Foundation
import KilnCore
import Testing

/// Warm snapshots (docs/building.md): builds resumed from a VM booted once on their parent.
extension VMBuildTests {
    /// The warm snapshots of the shared store saved on the blob `parent`.
    func warmSnapshots(on parent: String) throws -> [String] {
        let root = SharedStore.shared.home + "/cache/warm"
        return ((try? FileManager.default.contentsOfDirectory(atPath: root)) ?? []).filter { !$0.hasPrefix(".") }.map { root + "/" + $0 }
            .filter { directory in
                guard let data = FileManager.default.contents(atPath: directory + "/warm.json"),
                    let manifest = try? JSONSerialization.jsonObject(with: data) as? [String: Any]
                else { return false }
                return manifest["parent"] as? String == parent
            }
    }

    func modified(_ path: String) -> Date {
        (try? FileManager.default.attributesOfItem(atPath: path)[.modificationDate] as? Date) ?? .distantPast
    }

    /// examples/debian's product as family `family` in `directory`, without its tests (a test
    /// boot is not what is compared), and with a step that records what a clone of a VM would
    /// share with its siblings: random bytes, and the clock.
    func warmProduct(_ family: String, in directory: String) throws {
        var text = try String(contentsOfFile: Repo.root + "/examples/debian/product.yaml", encoding: .utf8)
        text = text.replacingOccurrences(of: "image: shop-web", with: "image: \(family)")
        let tests = try #require(text.range(of: "\n# Run on the sealed image's first boot"))
        let labels = try #require(text.range(of: "\nlabels:"))
        text.removeSubrange(tests.lowerBound..<labels.lowerBound)
        text = text.replacingOccurrences(
            of: "        - systemctl enable nginx\n",
            with: """
                        - systemctl enable nginx
                  - shell: |
                      head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \\n' > /etc/kiln-random
                      date -u +%s > /etc/kiln-clock

                """)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try text.write(toFile: directory + "/product.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.copyItem(atPath: Repo.root + "/examples/debian/site", toPath: directory + "/site")
    }

    /// Every path of an image's root filesystem with what kiln compares of it: type, mode,
    /// owner, and a file's bytes (digest) or a link's target; never times.
    func tree(of disk: String) async throws -> [String: String] {
        let flat = try await FlatDisk(of: disk)
        defer { flat.remove() }
        let dump = NSTemporaryDirectory() + "kiln-tree-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dump, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dump) }
        try await ProcessRunner.check("debugfs", ["-R", "rdump / \(dump)", flat.root])
        var tree: [String: String] = [:]
        let enumerator = try #require(FileManager.default.enumerator(atPath: dump))
        while let relative = enumerator.nextObject() as? String {
            let path = dump + "/" + relative
            var info = stat()
            guard lstat(path, &info) == 0 else { continue }
            var what = "\(info.st_mode) \(info.st_uid):\(info.st_gid)"
            if (info.st_mode & S_IFMT) == S_IFLNK {
                what += " -> " + (try FileManager.default.destinationOfSymbolicLink(atPath: path))
            } else if (info.st_mode & S_IFMT) == S_IFREG {
                what += " " + (try Hashing.sha256Hex(fileAt: path))
            }
            tree["/" + relative] = what
        }
        return tree
    }

    @Test(
        "a product built warm holds the files it holds built cold, but for the journal and login records; two builds resumed from one snapshot read different random bytes and the host's time; the snapshot's key is in no image, log or catalog row"
    )
    func warmAndCold() async throws {
        let store = SharedStore.shared
        let root = try await exampleAndScratchDirectory("warm")
        defer { try? FileManager.default.removeItem(atPath: root) }
        let parent = try #require(try await store.image("debian-12-nginx")["digest"] as? String)
        for family in ["wc-cold", "wc-prime", "wc-warm1", "wc-warm2"] { try warmProduct(family, in: root + "/" + family) }
        // The cold build: a boot of its own, no snapshot used or saved.
        let cold = try await store.kiln(["build", root + "/wc-cold", "--no-warm", "--force"])
        try #require(cold.status == 0, "\(cold.stderr.suffix(3000))")
        #expect(cold.stderr.contains("booting VM") && !cold.stderr.contains("warm snapshot"), "\(cold.stderr)")
        // A build that saves the app's snapshot, or resumes one saved for this very machine (one
        // found on the app may be another QEMU's or kiln's, under another key).
        let prime = try await store.kiln(["build", root + "/wc-prime", "--force"])
        try #require(prime.status == 0, "\(prime.stderr.suffix(3000))")
        #expect(prime.stderr.contains("warm snapshot saved in") || prime.stderr.contains("resumed from the warm snapshot"))
        // The one just saved or used: the newest (a resume marks its entry used).
        let snapshot = try #require(
            try warmSnapshots(on: parent).max { modified($0) < modified($1) })
        let started = Date()
        var warm: [[String: Any]] = []
        for family in ["wc-warm1", "wc-warm2"] {
            let build = try await store.kiln(["build", root + "/" + family, "--force"])
            try #require(build.status == 0, "\(build.stderr.suffix(3000))")
            #expect(build.stderr.contains("resumed from the warm snapshot"), "\(build.stderr)")
            #expect(!build.stderr.contains("booting VM"), "\(build.stderr)")
            // Debian's cloud kernel has no vmgenid driver: the handover reseeds it.
            #expect(build.stderr.contains("random number generator reseeded from the host's bytes"), "\(build.stderr)")
            warm.append(try await store.image(family))
        }
        let finished = Date()

        // Clones that do not share randomness, and that know the time.
        var seen: [String] = []
        for image in warm {
            let flat = try await FlatDisk(of: try #require(image["disk"] as? String))
            defer { flat.remove() }
            let random = try #require(try await flat.cat("/etc/kiln-random")).trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(random.count == 64, "\(random)")
            seen.append(random)
            let clockText = try await flat.cat("/etc/kiln-clock") ?? ""
            let clock = try #require(Double(clockText.trimmingCharacters(in: .whitespacesAndNewlines)), "\(clockText)")
            #expect(
                clock >= started.timeIntervalSince1970 - 5 && clock <= finished.timeIntervalSince1970 + 5,
                "the guest's clock read \(clock), the build ran from \(started.timeIntervalSince1970) to \(finished.timeIntervalSince1970)")
        }
        #expect(seen[0] != seen[1], "two builds resumed from one snapshot read the same random bytes")

        // The same files as cold, but for what each boot writes of its own.
        let coldTree = try await tree(of: try #require(try await store.image("wc-cold")["disk"] as? String))
        let warmTree = try await tree(of: try #require(warm[0]["disk"] as? String))
        let differing = Set(coldTree.keys).union(warmTree.keys).filter { coldTree[$0] != warmTree[$0] }.sorted()
        // Why each may differ: the journal records its own boot (its directory is named by the
        // boot's machine-id); wtmp, btmp and lastlog record logins with their times; the
        // step's own random bytes and time. The seed systemd saved at boot is sealed away.
        let expected = ["/var/log/journal/", "/var/log/wtmp", "/var/log/btmp", "/var/log/lastlog", "/etc/kiln-random", "/etc/kiln-clock"]
        #expect(coldTree["/var/lib/systemd/random-seed"] == nil && warmTree["/var/lib/systemd/random-seed"] == nil)
        let unexpected = differing.filter { path in !expected.contains { path.hasPrefix($0) } }
        #expect(unexpected.isEmpty, "warm and cold images differ beyond logs and seeds: \(unexpected)")
        #expect(coldTree.count > 10_000, "\(coldTree.count) paths")
        print("warm vs cold: \(coldTree.count) paths compared; differing: \(differing)")

        // The snapshot's key: the public key's base64 body, and a line of the private key.
        let manifestData = try #require(FileManager.default.contents(atPath: snapshot + "/warm.json"))
        let manifest = try #require(try JSONSerialization.jsonObject(with: manifestData) as? [String: Any])
        let privateKey = try String(contentsOfFile: snapshot + "/key", encoding: .utf8)
        let needles = [
            try #require((manifest["publicKey"] as? String)?.split(separator: " ").dropFirst().first.map(String.init)),
            try #require(privateKey.split(separator: "\n").dropFirst(2).first.map(String.init)),
        ]
        for image in warm {
            let disk = try #require(image["disk"] as? String)
            let flat = try await FlatDisk(of: disk)
            defer { flat.remove() }
            let log = try await store.kiln(["logs", try #require(image["name"] as? String)])
            let archive = try #require(image["log"] as? String)
            let archived = try await ProcessRunner.run("tar", ["--zstd", "-xOf", archive])
            for needle in needles {
                for file in [disk, flat.path, store.home + "/catalog.sqlite"] {
                    let grep = try await ProcessRunner.run("grep", ["-c", "-a", "-F", "--", needle, file])
                    #expect(grep.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the snapshot's key is in \(file)")
                }
                #expect(!log.stdout.contains(needle) && !archived.stdout.contains(needle), "the snapshot's key is in a log")
            }
        }
    }

    @Test(
        "kill -9 while a warm snapshot is saved leaves a store kiln verify accepts, no qemu, and an unfinished save the prune removes; a damaged snapshot means a notice and a cold boot"
    )
    func warmSaveKilledAndDamaged() async throws {
        let store = SharedStore.shared
        let dir = try await exampleAndScratchDirectory("warmkill")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: warmkill-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: echo warm-kill > /etc/warm-kill\n"
            .write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        let parent = try #require(try await store.image("debian-12-base")["digest"] as? String)
        for snapshot in try warmSnapshots(on: parent) { try FileManager.default.removeItem(atPath: snapshot) }
        let warmRoot = store.home + "/cache/warm"

        // Held after the guest's state is written and before the entry is renamed into place.
        let unfinished = Locked<String?>(nil)
        let killed = try await ProcessRunner.run(
            Repo.kiln, ["build", dir, "--force", "--home", store.home], environment: ["KILN_TEST_DELAY_WARM_SAVE_MS": "60000"],
            timeout: .seconds(900)
        ) { line in
            guard line.text.contains("kiln: SSH is up") else { return }
            Task {
                for _ in 0..<600 {
                    let saving = ((try? FileManager.default.contentsOfDirectory(atPath: warmRoot)) ?? []).filter { $0.hasPrefix(".tmp-") }
                    if let name = saving.first, FileManager.default.fileExists(atPath: warmRoot + "/" + name + "/boot.qcow2") {
                        unfinished.set(name)
                        _ = try await ProcessRunner.run("pkill", ["-KILL", "-f", "\(Repo.kiln) build \(dir)"])
                        return
                    }
                    try await Task.sleep(for: .milliseconds(100))
                }
            }
        }
        #expect(killed.status == 137, "\(killed.stderr.suffix(2000))")
        try #require(unfinished.value != nil, "the save was never seen under way")
        let verify = try await store.kiln(["verify"])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let leftovers = try await survivors(home: store.home, family: "warmkill-app")
        #expect(leftovers.isEmpty, "still running after the next kiln: \(leftovers)")
        #expect(try warmSnapshots(on: parent).isEmpty, "a killed save left an entry")
        let listed = try await store.kiln(["cache", "list"])
        #expect(listed.stdout.contains("unfinished save"), "\(listed.stdout)")
        let pruned = try await store.kiln(["cache", "prune"])
        #expect(pruned.stdout.contains("removed warm snapshot unfinished save"), "\(pruned.stdout)\(pruned.stderr)")
        #expect(!FileManager.default.fileExists(atPath: warmRoot + "/" + (unfinished.value ?? "")))

        // The rerun boots cold and saves; bytes changed in the saved state are found by its
        // digest: a notice, a cold boot, a build that succeeds and saves a new snapshot.
        let rerun = try await store.kiln(["build", dir, "--force"])
        try #require(rerun.status == 0, "\(rerun.stderr.suffix(3000))")
        #expect(rerun.stderr.contains("warm snapshot saved in"), "\(rerun.stderr)")
        let snapshot = try #require(try warmSnapshots(on: parent).first)
        let state = try FileHandle(forUpdating: URL(fileURLWithPath: snapshot + "/state"))
        try state.seek(toOffset: 4096)
        try state.write(contentsOf: Data("damaged".utf8))
        try state.close()
        let damaged = try await store.kiln(["build", dir, "--force"])
        #expect(damaged.status == 0, "\(damaged.stderr.suffix(3000))")
        #expect(
            damaged.stderr.contains("notice: the warm snapshot of this parent is unusable (its memory state does not match its digest)"),
            "\(damaged.stderr)")
        #expect(damaged.stderr.contains("booting VM") && damaged.stderr.contains("warm snapshot saved in"), "\(damaged.stderr)")
        let flat = try await FlatDisk(of: try #require(try await store.image("warmkill-app")["disk"] as? String))
        defer { flat.remove() }
        #expect(try await flat.cat("/etc/warm-kill") == "warm-kill\n")
    }
}
