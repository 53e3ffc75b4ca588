import Foundation
import KilnCore
import Testing

extension VMBuildTests {
    @Test("a private key or credential file left by a step fails the build at the secret scan unless allow_secrets lists it")
    func secretScan() async throws {
        let dir = try await exampleAndScratchDirectory("secrets")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let template = """
            image: leaky-app
            from: {image: debian-12-base}
            provision:
              - shell: |
                  mkdir -p /opt/deploy /root/.aws
                  printf -- '-----BEGIN OPENSSH PRIVATE KEY-----\\nb3BlbnNzaC1rZXktdjE=\\n-----END OPENSSH PRIVATE KEY-----\\n' > /opt/deploy/key
                  printf '[default]\\naws_access_key_id = AKIAEXAMPLE\\n' > /root/.aws/credentials
                  touch -d 2001-01-01 /opt/deploy/key
                  # Written while the guest's clock read 2000 (a step that set it back).
                  now=$(date +%s); date -s @946684800 > /dev/null
                  printf -- '-----BEGIN PRIVATE KEY-----\\nMIIE\\n' > /opt/deploy/late.pem
                  date -s @$now > /dev/null
            """
        try template.write(toFile: dir + "/leaky.yaml", atomically: true, encoding: .utf8)
        // Read from the stopped VM's disk by kiln, and (the path for disks kiln cannot read)
        // by the guest's own tools before it stops: both find both.
        for guest in [false, true] {
            let refused = try await SharedStore.shared.kiln(["build", dir], environment: guest ? ["KILN_GUEST_INSPECTION": "1"] : [:])
            #expect(refused.status == 1)
            #expect(refused.stderr.contains("failed at secret scan"), "\(refused.stderr)")
            #expect(refused.stderr.contains("found a private key: /opt/deploy/key"), "\(refused.stderr)")
            #expect(refused.stderr.contains("found a credential file: /root/.aws/credentials"), "\(refused.stderr)")
            // kiln compares inodes with the parent's; the guest's find compares change times
            // with the boot time by the guest's clock, and misses this one (docs/reliability.md).
            #expect(refused.stderr.contains("found a private key: /opt/deploy/late.pem") == !guest, "\(refused.stderr)")
            // Which path ran: the host reads the disk after the VM stopped; the guest scans before.
            let failed = try await SharedStore.shared.kiln(["logs", "--failed"])
            let build = try #require(failed.stdout.split(separator: "\n").last?.split(separator: " ").first.map(String.init))
            let log = try await SharedStore.shared.kiln(["logs", build]).stdout
            let stopped = log.range(of: "VM stopped after")?.lowerBound
            let scanned = try #require(log.range(of: "found a private key")?.lowerBound, "\(log)")
            #expect(guest ? stopped.map { scanned < $0 } ?? true : stopped.map { $0 < scanned } == true, "\(log)")
        }
        let images = try await SharedStore.shared.kiln(["images", "--family", "leaky-app"])
        #expect(!images.stdout.contains("leaky-app-v"))

        try (template + "\nallow_secrets: [/opt/deploy/*, /root/.aws/*]\n")
            .write(toFile: dir + "/leaky.yaml", atomically: true, encoding: .utf8)
        let allowed = try await SharedStore.shared.kiln(["build", dir])
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(allowed.stderr.contains("allowed by allow_secrets: private key /opt/deploy/key"), "\(allowed.stderr)")
    }

    @Test("the build's SSH key appears in no image disk, build log or catalog")
    func buildKeyLeavesNoTrace() async throws {
        let home = SharedStore.shared.home
        let dir = try await exampleAndScratchDirectory("keytrace")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try
            "image: keytrace-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: cat /root/.ssh/authorized_keys > /dev/null; sleep 2\n"
            .write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        // The key exists only while the build runs: read it from the build's scratch directory then.
        let build = Task { try await SharedStore.shared.kiln(["build", dir]) }
        var publicKey: String?
        var privateKey: String?
        for _ in 0..<1200 where publicKey == nil {
            try await Task.sleep(for: .milliseconds(100))
            let ids = ((try? FileManager.default.contentsOfDirectory(atPath: home + "/builds")) ?? []).filter {
                $0.contains("keytrace-app")
            }
            for id in ids {
                let key = home + "/builds/\(id)/id_ed25519"
                if let pub = try? String(contentsOfFile: key + ".pub", encoding: .utf8),
                    let priv = try? String(contentsOfFile: key, encoding: .utf8)
                {
                    publicKey = pub
                    privateKey = priv
                }
            }
        }
        let finished = try await build.value
        try #require(finished.status == 0, "\(finished.stderr)")
        // The public key's base64 body, and a line from the middle of the private key.
        let needles = [
            try #require(publicKey?.split(separator: " ").dropFirst().first.map(String.init)),
            try #require(privateKey?.split(separator: "\n").dropFirst(2).first.map(String.init)),
        ]
        let image = try await SharedStore.shared.image("keytrace-app")
        let disk = try #require(image["disk"] as? String)
        let flat = try await FlatDisk(of: disk)
        defer { flat.remove() }
        let logs = try FileManager.default.contentsOfDirectory(atPath: home + "/logs").map { home + "/logs/" + $0 }
        let log = try await SharedStore.shared.kiln(["logs", try #require(image["name"] as? String)])
        for needle in needles {
            for file in [disk, flat.path, home + "/catalog.sqlite"] {
                let grep = try await ProcessRunner.run("grep", ["-c", "-a", "-F", "--", needle, file])
                #expect(grep.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "0", "the build key is in \(file)")
            }
            #expect(!log.stdout.contains(needle))
            // The archives are compressed: look inside each.
            for archive in logs {
                let text = try await ProcessRunner.run("tar", ["--zstd", "-xOf", archive])
                #expect(!text.stdout.contains(needle), "the build key is in \(archive)")
            }
        }
    }
}
