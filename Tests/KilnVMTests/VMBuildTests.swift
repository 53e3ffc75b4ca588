import Foundation
import KilnCore
import KilnTestSupport
import Testing

enum Repo {
    static let root = KilnBinary.repositoryRoot
    static let kiln = KilnBinary.path
}

/// One store for every real-VM test of a run: examples/debian is built into it once
/// (base -> app -> product), and the other tests build on its images.
actor SharedStore {
    static let shared = SharedStore()

    nonisolated let home: String = {
        if let home = ProcessInfo.processInfo.environment["KILN_TEST_HOME"], !home.isEmpty { return home }
        return NSTemporaryDirectory() + "kiln-vm-tests-" + String(getpid())
    }()
    private var built: ProcessResult?

    /// Runs `kiln build examples/debian` the first time it is asked; later callers get the same result.
    func exampleBuild() async throws -> ProcessResult {
        if let built { return built }
        let result = try await kiln(["build", Repo.root + "/examples/debian"])
        built = result
        return result
    }

    nonisolated func kiln(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
        try await ProcessRunner.run(Repo.kiln, arguments + ["--home", home], environment: environment, timeout: .seconds(1800))
    }

    nonisolated func image(_ family: String) async throws -> [String: Any] {
        let result = try await kiln(["inspect", family, "--json"])
        return try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }
}

/// A flattened raw copy of an image's whole backing chain, read with debugfs (no mount, no VM).
struct FlatDisk {
    let path: String
    /// The root filesystem as e2fsprogs names it: the partition sfdisk lists with the x86-64 root
    /// type, at its offset (`FILE?offset=N`), or the whole file for a bare filesystem.
    let root: String

    init(of disk: String) async throws {
        path = NSTemporaryDirectory() + "kiln-flat-" + UUID().uuidString + ".raw"
        try await ProcessRunner.check("qemu-img", ["convert", "-O", "raw", disk, path])
        root = try await Self.rootFilesystem(path)
    }

    static func rootFilesystem(_ path: String) async throws -> String {
        let table = try await ProcessRunner.run("sfdisk", ["--json", path])
        guard table.succeeded,
            let json = try JSONSerialization.jsonObject(with: Data(table.stdout.utf8)) as? [String: Any],
            let partitions = (json["partitiontable"] as? [String: Any])?["partitions"] as? [[String: Any]]
        else { return path }
        let root = try #require(
            partitions.first { ($0["type"] as? String)?.uppercased() == "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709" },
            "no x86-64 root partition in \(table.stdout)")
        let start = try #require(root["start"] as? Int)
        return path + "?offset=\(start * 512)"
    }

    func cat(_ file: String) async throws -> String? {
        let result = try await ProcessRunner.run("debugfs", ["-R", "cat \(file)", root])
        return result.stderr.contains("File not found") ? nil : result.stdout
    }

    func exists(_ file: String) async throws -> Bool {
        let result = try await ProcessRunner.run("debugfs", ["-R", "stat \(file)", root])
        return !result.stderr.contains("File not found")
    }

    func remove() { try? FileManager.default.removeItem(atPath: path) }
}

/// A new, empty directory for a test's templates, once examples/debian is built in the shared
/// store (the tests' layers build on its base). The caller removes it.
func exampleAndScratchDirectory(_ tag: String) async throws -> String {
    let result = try await SharedStore.shared.exampleBuild()
    try #require(result.status == 0, "kiln build examples/debian failed:\n\(result.stderr.suffix(3000))")
    let dir = NSTemporaryDirectory() + "kiln-\(tag)-" + UUID().uuidString
    try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    return dir
}

let vmTestsEnabled = ProcessInfo.processInfo.environment["KILN_SKIP_VM_TESTS"] == nil

@Suite("Real VM builds (QEMU)", .serialized, .enabled(if: vmTestsEnabled, "KILN_SKIP_VM_TESTS is set"))
struct VMBuildTests {
    @Test("examples/debian builds base -> app -> product and kiln images lists all three with parents")
    func buildsTheExample() async throws {
        let result = try await SharedStore.shared.exampleBuild()
        #expect(result.status == 0, "kiln build failed:\n\(result.stderr.suffix(3000))")
        let listing = try await SharedStore.shared.kiln(["images", "--json"])
        let images = try #require(try JSONSerialization.jsonObject(with: Data(listing.stdout.utf8)) as? [[String: Any]])
        // Other tests add families (some with several images) to the shared store: newest wins.
        let byFamily = Dictionary(images.map { ($0["family"] as! String, $0) }, uniquingKeysWith: { _, newer in newer })
        let base = try #require(byFamily["debian-12-base"])
        let app = try #require(byFamily["debian-12-nginx"])
        let product = try #require(byFamily["shop-web"])
        #expect(base["parent"] is NSNull || base["parent"] == nil)
        #expect(app["parent"] as? String == base["name"] as? String)
        #expect(product["parent"] as? String == app["name"] as? String)
        for image in [base, app, product] {
            let name = try #require(image["name"] as? String)
            #expect(name.range(of: #"^[a-z0-9-]+-v\d{8}-\d+$"#, options: .regularExpression) != nil)
            #expect(image["state"] as? String == "READY")
        }
        let table = try await SharedStore.shared.kiln(["images"])
        #expect(table.stdout.hasPrefix("NAME"))
        #expect(table.stdout.contains("shop-web-v"))
    }

    @Test("building the example again with no change is up to date in every image and boots no VM")
    func rebuildIsUpToDate() async throws {
        let first = try await SharedStore.shared.exampleBuild()
        try #require(first.status == 0)
        let again = try await SharedStore.shared.kiln(["build", Repo.root + "/examples/debian"])
        #expect(again.status == 0)
        let lines = again.stdout.split(separator: "\n")
        #expect(lines.count == 3 && lines.allSatisfy { $0.hasPrefix("up to date: ") }, "\(again.stdout)")
        #expect(!again.stderr.contains("booting VM"))
        let plan = try await SharedStore.shared.kiln(["plan", Repo.root + "/examples/debian", "--json"])
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [[String: Any]])
        #expect(entries.allSatisfy { $0["action"] as? String == "up to date" })
        let product = try await SharedStore.shared.image("shop-web")
        #expect((product["build_key"] as? String)?.count == 64)
        #expect(entries.last?["key"] as? String == product["build_key"] as? String)
    }

    @Test("each child disk is a qcow2 overlay whose backing file is its parent's disk, by relative path")
    func overlaysChain() async throws {
        let result = try await SharedStore.shared.exampleBuild()
        try #require(result.status == 0)
        for (child, parent) in [("shop-web", "debian-12-nginx"), ("debian-12-nginx", "debian-12-base")] {
            let childDisk = try #require(try await SharedStore.shared.image(child)["disk"] as? String)
            let parentDisk = try #require(try await SharedStore.shared.image(parent)["disk"] as? String)
            let info = try await ProcessRunner.check("qemu-img", ["info", "--output=json", childDisk]).stdout
            let json = try #require(try JSONSerialization.jsonObject(with: Data(info.utf8)) as? [String: Any])
            #expect(json["format"] as? String == "qcow2")
            let backing = try #require(json["backing-filename"] as? String)
            #expect(backing.hasPrefix("../"), "backing path must be relative so the store can move")
            let resolved = URL(fileURLWithPath: backing, relativeTo: URL(fileURLWithPath: childDisk).deletingLastPathComponent())
                .standardizedFileURL.path
            #expect(resolved == parentDisk)
            // The child holds only its own changes.
            let childBytes = try FileManager.default.attributesOfItem(atPath: childDisk)[.size] as! Int
            let parentBytes = try FileManager.default.attributesOfItem(atPath: parentDisk)[.size] as! Int
            #expect(childBytes < 200 << 20)
            _ = parentBytes
        }
    }

    @Test("the product disk holds every layer's files, a clean filesystem, and no build credentials")
    func productContents() async throws {
        let result = try await SharedStore.shared.exampleBuild()
        try #require(result.status == 0)
        let disk = try #require(try await SharedStore.shared.image("shop-web")["disk"] as? String)
        let flat = try await FlatDisk(of: disk)
        defer { flat.remove() }
        // base layer
        #expect(try await flat.cat("/etc/kiln-base-release")?.hasPrefix("kiln base ") == true)
        // Steps run with Debian's umask 022: what they create is readable as on any machine.
        let mode = try await ProcessRunner.check("debugfs", ["-R", "stat /etc/kiln-base-release", flat.root]).stdout
        #expect(mode.contains("Mode:  0644"), "\(mode.prefix(300))")
        // app layer: a package, a script with a variable, an uploaded file
        #expect(try await flat.exists("/usr/sbin/nginx"))
        #expect(try await flat.cat("/etc/kiln/greeting") == "hello from the app layer\n")
        let nginxConf = try String(contentsOfFile: Repo.root + "/examples/debian/files/nginx.conf", encoding: .utf8)
        #expect(try await flat.cat("/etc/nginx/nginx.conf") == nginxConf)
        // product layer: a directory tree and an interpolated variable
        let index = try String(contentsOfFile: Repo.root + "/examples/debian/site/index.html", encoding: .utf8)
        #expect(try await flat.cat("/var/www/html/index.html") == index)
        #expect(try await flat.exists("/var/www/html/assets/style.css"))
        #expect(try await flat.cat("/etc/shop-release") == "1.0\n")
        // No build key, no host keys, no machine id, no bootstrap leftovers.
        #expect(try await !flat.exists("/root/.ssh/authorized_keys"))
        #expect(try await !flat.exists("/etc/ssh/ssh_host_ed25519_key"))
        #expect(try await !flat.exists("/etc/ssh/ssh_host_rsa_key"))
        #expect(try await flat.cat("/etc/machine-id") == "")
        #expect(try await !flat.exists("/usr/sbin/policy-rc.d"))
        #expect(try await !flat.exists("/tmp/kiln-step.sh"))
        // The steps resolved names (the app layer ran apt-get) through the resolver kiln set up
        // for the build boot only; the base has no resolv.conf, and the image has none either.
        #expect(try await !flat.exists("/etc/resolv.conf"))
        let fsck = try await ProcessRunner.run("e2fsck", ["-fn", flat.root])
        #expect(fsck.status == 0, "the image's filesystem must be clean:\n\(fsck.stdout)\(fsck.stderr)")
    }

    @Test("kiln logs prints an image's archived build log with step output and the serial console")
    func logsOfAnImage() async throws {
        let result = try await SharedStore.shared.exampleBuild()
        try #require(result.status == 0)
        let log = try await SharedStore.shared.kiln(["logs", "debian-12-nginx"])
        #expect(log.status == 0)
        #expect(log.stdout.contains("[debian-12-nginx] [kiln] image ready: debian-12-nginx-v"))
        #expect(log.stdout.contains("Setting up nginx-light"))
        #expect(log.stdout.contains("[console]"))
    }

    @Test("a failing step names the step, tears the VM down, keeps no image and archives its log")
    func failingStep() async throws {
        let dir = try await exampleAndScratchDirectory("failing")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try """
        image: broken-app
        from: {image: debian-12-base}
        provision:
          - shell: echo before-the-failure
          - shell: |
              echo about to fail
              false
              echo never printed
          - shell: echo not reached
        """.write(toFile: dir + "/broken.yaml", atomically: true, encoding: .utf8)
        let build = try await SharedStore.shared.kiln(["build", dir])
        #expect(build.status == 1)
        #expect(build.stderr.contains("build of broken-app failed at provision[1] shell echo about to fail"))
        #expect(build.stderr.contains("about to fail"))
        #expect(!build.stderr.contains("never printed"))
        let images = try await SharedStore.shared.kiln(["images", "--family", "broken-app"])
        #expect(!images.stdout.contains("broken-app-v"))
        // Nothing of the failed build is left running or staged.
        let home = await SharedStore.shared.home
        let qemus = try await ProcessRunner.run("pgrep", ["-f", "kiln-.*broken-app"])
        #expect(qemus.stdout.isEmpty, "qemu of the failed build is still running: \(qemus.stdout)")
        let staged = try FileManager.default.contentsOfDirectory(atPath: home + "/images").filter { $0.hasPrefix(".tmp-") }
        #expect(staged.isEmpty)
        let failed = try await SharedStore.shared.kiln(["logs", "--failed"])
        let line = try #require(failed.stdout.split(separator: "\n").first { $0.contains("broken-app") })
        let buildID = String(line.split(separator: " ")[0])
        let log = try await SharedStore.shared.kiln(["logs", buildID])
        #expect(log.stdout.contains("before-the-failure"))
        #expect(log.stdout.contains("failed at provision[1]"))
        #expect(!log.stdout.contains("not reached"))
    }

    @Test("Ctrl-C during boot stops the VM, records the build as cancelled and exits 130")
    func interrupted() async throws {
        let dir = try await exampleAndScratchDirectory("interrupt")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: interrupted-app\nfrom: {image: debian-12-base}\nprovision:\n  - shell: sleep 600\n"
            .write(toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        let home = SharedStore.shared.home
        let build = Task { try await SharedStore.shared.kiln(["build", dir]) }
        // Wait until the VM is booting (or resuming a warm snapshot), then interrupt kiln as a
        // terminal's Ctrl-C would.
        var booting = false
        for _ in 0..<600 where !booting {
            try await Task.sleep(for: .milliseconds(100))
            let scratch = (try? FileManager.default.contentsOfDirectory(atPath: home + "/builds")) ?? []
            booting = scratch.filter { $0.contains("interrupted-app") }.contains { id in
                let log = (try? String(contentsOfFile: home + "/builds/\(id)/build.log", encoding: .utf8)) ?? ""
                return log.contains("booting VM") || log.contains("resuming the warm snapshot")
            }
        }
        try #require(booting)
        _ = try await ProcessRunner.run("pkill", ["-INT", "-f", "kiln build \(dir)"])
        let finished = try await build.value
        #expect(finished.status == 130)
        #expect(finished.stderr.contains("interrupted"))
        let qemus = try await ProcessRunner.run("pgrep", ["-f", "kiln-.*interrupted-app"])
        #expect(qemus.stdout.isEmpty, "qemu outlived kiln: \(qemus.stdout)")
        let failed = try await SharedStore.shared.kiln(["logs", "--failed"])
        #expect(failed.stdout.split(separator: "\n").contains { $0.contains("interrupted-app") && $0.contains("cancelled") })
        let staged = try FileManager.default.contentsOfDirectory(atPath: home + "/images").filter { $0.hasPrefix(".tmp-") }
        #expect(staged.isEmpty)
    }
}
