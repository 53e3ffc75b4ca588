import Foundation
import KilnCore
import KilnTestSupport
import Testing

#if canImport(Glibc)
    import Glibc
#endif

/// A store with provider plugins installed in its `plugins/`, driven through the kiln binary.
final class PluginStore {
    let home = NSTemporaryDirectory() + "kiln-plugins-" + UUID().uuidString
    let pids: String
    static let chroot = KilnBinary.repositoryRoot + "/examples/plugins/chroot"
    static let faulty = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/faulty_plugin.py"

    init() throws {
        try FileManager.default.createDirectory(atPath: home + "/plugins", withIntermediateDirectories: true)
        pids = home + "/plugin-pids"
    }

    deinit { try? FileManager.default.removeItem(atPath: home) }

    func install(_ executable: String, as name: String) throws {
        try FileManager.default.createSymbolicLink(atPath: home + "/plugins/kiln-provider-" + name, withDestinationPath: executable)
    }

    func kiln(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
        try await KilnBinary.run(
            arguments + ["--home", home], environment: ["FAULTY_PLUGIN_PIDS": pids].merging(environment) { $1 },
            timeout: .seconds(120))
    }

    func inspect(_ name: String) async throws -> [String: Any] {
        let result = try await kiln(["inspect", name, "--json"])
        try #require(result.status == 0, "\(result.stderr)")
        return try #require(JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any])
    }

    /// A file of the tree image `name` holds (the chroot plugin's rootfs.tar).
    func file(_ path: String, in name: String) async throws -> String {
        let image = try await inspect(name)
        let digest = try #require(image["digest"] as? String)
        return try await ProcessRunner.check("tar", ["-xOf", "\(home)/images/\(digest)/rootfs.tar", path]).stdout
    }

    /// The plugin processes (and what they started) that are still alive.
    func survivors() -> [Int32] {
        let text = (try? String(contentsOfFile: pids, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { Int32($0) }.filter { pid in
            kill(pid, 0) == 0 && !((try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8))?.contains(" Z ") ?? true)
        }
    }

    /// A one-layer template on a provider image, built by `provider`.
    func template(provider: String, steps: String = "  - shell: echo step") throws -> String {
        let dir = home + "/t-" + provider
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        try "image: \(provider)-base\nfrom: {provider_image: busybox}\nprovider: \(provider)\nprovision:\n\(steps)\n".write(
            toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        return dir
    }
}

@Suite("Provider plugins: the chroot example and misbehaving plugins (no VM)")
struct PluginProviderTests {
    @Test("on a terminal a build's step lines are dim; NO_COLOR (set, not empty) turns that off and nothing else")
    func noColor() async throws {
        let store = try PluginStore()
        try store.install(PluginStore.chroot + "/kiln-provider-chroot", as: "chroot")
        let dir = try store.template(provider: "chroot", steps: "  - shell: echo said-by-the-step")
        // `script` gives kiln a pseudo-terminal, as a developer's shell would.
        func build(_ environment: [String: String]) async throws -> String {
            // The test runner's own NO_COLOR (if any) is dropped: each case sets its own.
            let given = environment["NO_COLOR"].map { "NO_COLOR='\($0)' " } ?? ""
            let command = "env -u NO_COLOR \(given)\(KilnBinary.path) build \(dir) --home \(store.home) --force"
            let run = try await ProcessRunner.run(
                "script", ["-qefc", command, "/dev/null"],
                environment: ["TERM": "xterm", "FAULTY_PLUGIN_PIDS": store.pids])
            try #require(run.status == 0, "\(run.stdout)\(run.stderr)")
            return run.stdout
        }
        let coloured = try await build([:])
        #expect(
            coloured.contains("\u{1B}[2mprovision[0] shell echo said-by-the-step: said-by-the-step\u{1B}[0m"),
            "\(coloured.debugDescription)")
        let plain = try await build(["NO_COLOR": "1"])
        #expect(!plain.contains("\u{1B}[2m") && !plain.contains("\u{1B}[0m"), "\(plain.debugDescription)")
        #expect(
            plain.contains("provision[0] shell echo said-by-the-step: said-by-the-step") && plain.contains("built chroot-base-v"),
            "\(plain)")
        #expect(try await build(["NO_COLOR": ""]).contains("\u{1B}[2m"), "an empty NO_COLOR is not set")
    }

    @Test(
        "examples/plugins/chroot builds through the plugin in $KILN_HOME/plugins: the steps' files are in the image, verify re-hashes the tree, a rebuild is up to date"
    )
    func chrootExample() async throws {
        let store = try PluginStore()
        try store.install(PluginStore.chroot + "/kiln-provider-chroot", as: "chroot")
        let build = try await store.kiln(["build", PluginStore.chroot])
        #expect(build.status == 0, "\(build.stderr)")
        #expect(build.stdout.contains("built chroot-greeter-v"), "\(build.stdout)")
        #expect(build.stderr.contains("protocol 1, capabilities exec, upload, download, snapshot"))

        let images = try await store.kiln(["images", "--json"])
        let list = try #require(JSONSerialization.jsonObject(with: Data(images.stdout.utf8)) as? [[String: Any]])
        let names = list.compactMap { $0["name"] as? String }
        let greeter = try #require(names.first { $0.hasPrefix("chroot-greeter-") }, "\(images.stdout)")
        #expect(try await store.file("etc/greeter/greeting", in: greeter) == "hello from chroot base\n")
        #expect(
            try await store.file("etc/motd", in: greeter)
                == (try String(contentsOfFile: PluginStore.chroot + "/files/motd", encoding: .utf8)))
        let image = try await store.inspect(greeter)
        #expect(image["provider"] as? String == "chroot")
        #expect(image["disk"] == nil)
        let artifact = try #require(image["artifact"] as? [String: Any])
        #expect((artifact["files"] as? [String: String])?.keys.sorted() == ["rootfs.tar"])

        let again = try await store.kiln(["build", PluginStore.chroot])
        #expect(again.status == 0 && again.stdout.contains("up to date"), "\(again.stdout)")
        #expect(try await store.kiln(["verify"]).status == 0)

        // A disk export has nothing to read: said, exit 2.
        let export = try await store.kiln(["export", greeter, "--format", "qcow2", "--output", store.home + "/x.qcow2"])
        #expect(export.status == 2 && export.stderr.contains("is a chroot image"), "\(export.stderr)")

        // The tree is part of the blob's content address: a changed byte is found.
        let tar = "\(store.home)/images/\(try #require(image["digest"] as? String))/rootfs.tar"
        chmod(tar, 0o644)
        let handle = try #require(FileHandle(forWritingAtPath: tar))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("x".utf8))
        try handle.close()
        let verify = try await store.kiln(["verify"])
        #expect(verify.status == 1 && verify.stdout.contains("rootfs.tar is damaged"), "\(verify.stdout)")
        #expect(store.survivors().isEmpty)
        // Lifecycle notes to the plugin once wrote a throw-away log over /dev/null.
        let null = try FileManager.default.attributesOfItem(atPath: "/dev/null")[.type] as? FileAttributeType
        #expect(null == .typeCharacterSpecial, "/dev/null is no longer a device")
    }

    @Test("a plugin on PATH is found too; an unknown provider is an error at its position with exit 2, before anything runs")
    func discovery() async throws {
        let store = try PluginStore()
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        let onPath = try await store.kiln(
            ["build", try store.template(provider: "chroot")], environment: ["PATH": PluginStore.chroot + ":" + path])
        #expect(onPath.status == 0, "\(onPath.stderr)")

        let dir = try store.template(provider: "nosuch")
        let unknown = try await store.kiln(["build", dir])
        #expect(unknown.status == 2)
        #expect(
            unknown.stderr.contains(
                "\(dir)/base.yaml:3:11: error: unknown provider 'nosuch': built in are qemu, aws, and no plugin kiln-provider-nosuch is in \(store.home)/plugins or on PATH"
            ), "\(unknown.stderr)")

        // qemu's sources are not a plugin's, and a plugin's are not qemu's.
        try "image: wrong\nfrom: {debootstrap: {suite: bookworm}}\nprovider: chroot\n".write(
            toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        try store.install(PluginStore.chroot + "/kiln-provider-chroot", as: "chroot")
        let mismatch = try await store.kiln(["build", dir])
        #expect(mismatch.status == 2 && mismatch.stderr.contains("give from: {provider_image: ID}"), "\(mismatch.stderr)")
    }

    @Test("the greeter template builds unchanged on the chroot plugin: only --var provider and --var base differ from its qemu build")
    func sameTemplate() async throws {
        let store = try PluginStore()
        try store.install(PluginStore.chroot + "/kiln-provider-chroot", as: "chroot")
        #expect(try await store.kiln(["build", try store.template(provider: "chroot")]).status == 0)
        let greeter = KilnBinary.repositoryRoot + "/Tests/Fixtures/greeter"
        let build = try await store.kiln([
            "build", greeter, "--var", "provider=chroot", "--var", "base=chroot-base", "--var", "download_to=\(store.home)/out",
        ])
        #expect(build.status == 0, "\(build.stderr)")
        let name = try #require(
            build.stdout.split(separator: " ").first { $0.hasPrefix("greeter-v") }.map { String($0) }, "\(build.stdout)")
        #expect(try await store.file("etc/greeter/greeting", in: name) == "hello from kiln\n")
        // The last step downloaded it through the plugin's download request.
        #expect(try String(contentsOfFile: store.home + "/out/greeting", encoding: .utf8) == "hello from kiln\n")
        #expect(try await store.file("etc/motd", in: name) == (try String(contentsOfFile: greeter + "/files/motd", encoding: .utf8)))
        // A chroot image is no parent for qemu.
        let mixed = try await store.kiln(["build", greeter, "--var", "base=chroot-base"])
        #expect(mixed.status == 2 && mixed.stderr.contains("its parent chroot-base is a chroot image"), "\(mixed.stderr)")
    }

    @Test(
        "a chroot step that runs past its timeout is stopped by the plugin, in the chroot too; the build fails at the step and nothing of it survives"
    )
    func chrootStepTimeout() async throws {
        let store = try PluginStore()
        try store.install(PluginStore.chroot + "/kiln-provider-chroot", as: "chroot")
        let dir = try store.template(provider: "chroot", steps: "  - shell: sleep 4321\n    timeout: 2s")
        let started = ContinuousClock.now
        let build = try await store.kiln(["build", dir])
        #expect(build.status == 1, "\(build.stderr)")
        #expect(
            build.stderr.contains("failed at provision[0] shell sleep 4321: the step did not finish within 2 s (timeout:)"),
            "\(build.stderr)")
        #expect(ContinuousClock.now - started < .seconds(30))
        let left = try await ProcessRunner.run("pgrep", ["-f", "sleep 4321"])
        #expect(left.stdout.isEmpty, "the step's sleep survived: \(left.stdout)")
    }

    @Test(
        "a plugin that crashes, hangs, speaks garbage, speaks another protocol version or refuses fails the build with a message saying which, and leaves no process and no staging"
    )
    func faults() async throws {
        let cases: [(name: String, flags: [String], status: Int32, message: String)] = [
            ("crash", [], 1, "the crash plugin (\\S+) exited with status 3; it said: segmentation fault \\(not really\\)"),
            ("hang", ["--boot-timeout", "3"], 1, "the hang plugin did not answer create-instance within 3 s; it was stopped"),
            ("garbage", [], 1, "broke the protocol: it printed a line that is not protocol JSON: 'hello there, I am not JSON'"),
            ("oldproto", [], 1, "the oldproto plugin speaks protocol version 99; this kiln speaks 1"),
            ("refuse", [], 1, "the refuse plugin's exec failed: quota_exceeded: no more instances today"),
            ("orphan", ["--step-timeout", "3"], 1, "the step did not finish within 3 s"),
            ("notready", [], 1, "the notready plugin's wait-ready failed: not_ready: the instance never came up"),
        ]
        for (name, flags, status, message) in cases {
            let store = try PluginStore()
            try store.install(PluginStore.faulty, as: name)
            let started = ContinuousClock.now
            let result = try await store.kiln(["build", try store.template(provider: name)] + flags)
            #expect(result.status == status, "\(name): \(result.stderr)")
            #expect(result.stderr.contains(try Regex(message)), "\(name): \(result.stderr)")
            #expect(ContinuousClock.now - started < .seconds(40), "\(name) took too long to fail")
            #expect(store.survivors().isEmpty, "\(name): plugin processes outlived kiln: \(store.survivors())")
            let images = (try? FileManager.default.contentsOfDirectory(atPath: store.home + "/images")) ?? []
            #expect(images.isEmpty, "\(name) left \(images)")
            if name == "crash" || name == "refuse" {
                #expect(result.stderr.contains("step output before the fault"), "\(name): the step's output is not in the error")
            }
            // A plugin that still answers is asked to destroy the instance it created.
            if name == "refuse" || name == "notready" {
                let destroyed = (try? String(contentsOfFile: store.pids + ".destroyed", encoding: .utf8)) ?? ""
                #expect(destroyed == "destroy i-1\n", "\(name): \(destroyed)")
            }
        }
    }
}
