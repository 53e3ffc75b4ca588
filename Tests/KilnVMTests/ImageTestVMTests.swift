import Foundation
import KilnCore
import Testing

// Part of the serialized VM suite: these build on the shared store's example images.
extension VMBuildTests {
    @Test("examples/debian's product passes its tests on a test boot through firmware and GRUB; inspect shows them; the disk is unchanged")
    func exampleProductTests() async throws {
        let result = try await SharedStore.shared.exampleBuild()
        try #require(result.status == 0, "kiln build examples/debian failed:\n\(result.stderr.suffix(3000))")
        let product = try await SharedStore.shared.image("shop-web")
        let tests = try #require(product["tests"] as? [String: Any], "no tests in \(product)")
        #expect(tests["status"] as? String == "passed")
        #expect(tests["passed"] as? Int == 5 && tests["failed"] as? Int == 0)
        let steps = try #require(tests["steps"] as? [[String: Any]])
        #expect(steps.map { $0["title"] as? String ?? "" }.contains("test[1] the site is served from the host"))
        // The bases have no tests: no run recorded.
        #expect(try await SharedStore.shared.image("debian-12-base")["tests"] == nil)
        // The test boot ran on a throw-away overlay: the sealed blob still has its digest.
        let name = try #require(product["name"] as? String)
        let verify = try await SharedStore.shared.kiln(["verify", name])
        #expect(verify.status == 0, "\(verify.stdout)\(verify.stderr)")
        let log = try await SharedStore.shared.kiln(["logs", "shop-web", "--tests"])
        #expect(log.status == 0, "\(log.stderr)")
        // Booted by the image's own GRUB (its root=UUID= line), not by kiln's kernel boot (root=LABEL=root).
        #expect(log.stdout.contains("BOOT_IMAGE=/vmlinuz root=UUID="), "\(log.stdout.prefix(3000))")
        #expect(!log.stdout.contains("root=LABEL=root"))
        #expect(log.stdout.contains("[kiln] tests passed: 5 step(s)"))
        let table = try await SharedStore.shared.kiln(["images", "--family", "shop-web"])
        #expect(table.stdout.contains("TESTS") && table.stdout.contains("passed"), "\(table.stdout)")
    }

    @Test(
        "a layer that breaks nginx only at boot fails its test: FAILED, not resolved, promoted or built on, its log archived; editing only the test reruns it on the same image"
    )
    func failingLayerAndRerun() async throws {
        let dir = try await exampleAndScratchDirectory("tests")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        // The build steps pass: nothing reloads nginx in the build VM. Only a boot starts it with
        // the broken configuration (and a site it would serve if it started).
        let layer = """
            image: broken-web
            from: {image: debian-12-nginx}
            provision:
              - shell: |
                  echo ok > /var/www/html/index.html
                  sed -i 's/worker_connections 256;/worker_connections 256; bogus_directive on;/' /etc/nginx/nginx.conf
                  grep -q bogus_directive /etc/nginx/nginx.conf
            test:
              ports: [80]
              steps:
                - name: the site answers
                  shell-local: curl -fsS --retry 5 --retry-delay 1 --retry-connrefused "http://$KILN_TEST_HOST:$KILN_PORT_80/" >/dev/null

            """
        try layer.write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        try """
        image: broken-child
        from: {image: broken-web}
        provision:
          - shell: "true"
        """.write(toFile: dir + "/child.yaml", atomically: true, encoding: .utf8)
        let store = SharedStore.shared
        let junit = dir + "/junit.xml"
        let build = try await store.kiln(["build", dir, "--only", "broken-web", "--junit", junit])
        #expect(build.status == 1, "\(build.stderr.suffix(3000))")
        #expect(build.stderr.contains("failed at test[0] the site answers"), "\(build.stderr.suffix(3000))")
        let listed = try await store.kiln(["images", "--family", "broken-web", "--json"])
        let image = try #require((try JSONSerialization.jsonObject(with: Data(listed.stdout.utf8)) as? [[String: Any]])?.last)
        let name = try #require(image["name"] as? String)
        let digest = try #require(image["digest"] as? String)
        #expect(image["state"] as? String == "FAILED")
        #expect((image["tests"] as? [String: Any])?["failed_step"] as? String == "test[0] the site answers")
        // Not resolved, promoted, exported or built on.
        let resolve = try await store.kiln(["resolve", "broken-web"])
        #expect(resolve.status != 0 && resolve.stderr.contains("its newest, \(name), is FAILED"), "\(resolve.stderr)")
        let exact = try await store.kiln(["resolve", name])
        #expect(exact.status == 2 && exact.stderr.contains("is FAILED: its tests failed at test[0] the site answers"), "\(exact.stderr)")
        let promote = try await store.kiln(["promote", name, "--channel", "prod"])
        #expect(promote.status == 2 && promote.stderr.contains("only a READY image can be promoted"), "\(promote.stderr)")
        let child = try await store.kiln(["build", dir, "--only", "broken-child"])
        #expect(child.status != 0 && child.stderr.contains("broken-web"), "\(child.stderr)")
        // The log and the disk stay for inspection.
        let log = try await store.kiln(["logs", name, "--tests"])
        #expect(log.status == 0 && log.stdout.contains("[test[0] the site answers]"), "\(log.stdout.suffix(2000))")
        #expect(log.stdout.contains("nginx"))
        #expect(try await store.kiln(["verify", name]).status == 0)
        let report = try String(contentsOfFile: junit, encoding: .utf8)
        #expect(report.contains("<failure message=") && report.contains("test[0] the site answers"), "\(report)")

        // Only the test changes: it now checks what the broken configuration does at boot (and so
        // that it was the configuration, not the site, that failed the first run).
        try layer.replacingOccurrences(
            of: "shell-local: curl -fsS --retry 5 --retry-delay 1 --retry-connrefused \"http://$KILN_TEST_HOST:$KILN_PORT_80/\" >/dev/null",
            with: "shell: \"! systemctl is-active nginx\""
        ).write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        let plan = try await store.kiln(["plan", dir, "--json"])
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [[String: Any]])
        #expect(entries.first { $0["family"] as? String == "broken-web" }?["action"] as? String == "test", "\(plan.stdout)")
        let rerun = try await store.kiln(["build", dir, "--only", "broken-web"])
        #expect(rerun.status == 0, "\(rerun.stderr.suffix(3000))")
        #expect(rerun.stdout.contains("tested \(name)"), "\(rerun.stdout)")
        #expect(rerun.stderr.components(separatedBy: "booting test VM").count == 2, "one test boot")
        #expect(!rerun.stderr.contains("booting VM") && !rerun.stderr.contains("resuming the warm snapshot"), "no build VM")
        let after = try await store.image(name)
        #expect(after["name"] as? String == name && after["digest"] as? String == digest)
        #expect(after["state"] as? String == "READY")
        #expect(try await store.kiln(["verify", name]).status == 0)
    }
}
