import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTemplates
import Testing

@testable import KilnBuild

/// Records what a paused build showed, and continues it.
final class RecordingPrompt: BreakpointPrompt {
    let messages = Locked<[String]>([])
    func pause(_ message: String) async throws { messages.withLock { $0.append(message) } }
}

@Suite("Step options: conditions, retries, timeouts, hidden output, breakpoints (fake provider)")
struct StepOptionTests {
    /// Builds the workspace's graph with `app.yaml` replaced by `steps` (on the base).
    func build(
        _ steps: String, options: BuildOptions = BuildOptions(), vars: String = ""
    ) async throws -> (workspace: Workspace, provider: FakeProvider, result: Result<[BuildResult], any Error>, log: String) {
        let workspace = try Workspace()
        try "image: app\nfrom: {image: base}\n\(vars)provision:\n\(steps)".write(
            toFile: workspace.dir + "/t/app.yaml", atomically: true, encoding: .utf8)
        let provider = FakeProvider()
        let (set, graph) = try workspace.graph()
        let builder = Builder(store: workspace.store, provider: provider, options: options, reporter: nil)
        let result: Result<[BuildResult], any Error>
        do {
            result = .success(try await builder.build(graph, secrets: set.sensitiveValues))
        } catch {
            result = .failure(error)
        }
        let record = try #require(try workspace.store.catalog.builds().first { $0.family == "app" })
        let archive = try #require(record.log)
        let log = try #require(try LogArchive.read(workspace.store.absolute(archive), entry: "build.log"))
        return (workspace, provider, result, String(decoding: log, as: UTF8.self))
    }

    @Test("a step that fails twice then succeeds passes with retries: 2, waiting twice as long before each retry")
    func retriesWithBackoff() async throws {
        let (workspace, provider, result, log) = try await build(
            "  - name: flaky mirror\n    shell: echo FLAKY-3\n    retries: 2\n    retry_delay: 100ms\n  - shell: echo after\n")
        defer { workspace.remove() }
        _ = try result.get()
        #expect(provider.events.value.count(where: { $0.hasPrefix("run echo FLAKY-3") }) == 3)
        #expect(log.contains("attempt 1 of 3 failed: exit status 4"), "\(log)")
        #expect(log.contains("retrying in 0.1 s (retries: 2)"))
        #expect(log.contains("attempt 2 of 3 failed: exit status 4"))
        #expect(log.contains("retrying in 0.2 s (retries: 2)"))
        #expect(log.contains("[provision[0] flaky mirror] ran: echo FLAKY-3"))
    }

    @Test("a step that still fails after its retries fails the build, named by its name:")
    func retriesExhausted() async throws {
        let (workspace, provider, result, log) = try await build(
            "  - name: flaky mirror\n    shell: echo FLAKY-5\n    retries: 1\n    retry_delay: 10ms\n  - shell: echo after\n")
        defer { workspace.remove() }
        #expect(throws: KilnError.self) { try result.get() }
        let error = try #require(result.failure as? KilnError)
        #expect(error.message.hasPrefix("build of app failed at provision[0] flaky mirror: exit status 4"), "\(error.message)")
        #expect(provider.events.value.count(where: { $0.hasPrefix("run echo FLAKY-5") }) == 2)
        #expect(log.contains("attempt 1 of 2 failed"))
        #expect(!log.contains("attempt 2 of 2 failed"))
        #expect(provider.events.value.last == "destroy")
    }

    @Test("a hung step is stopped at its timeout:, retried, then fails the build and the machine is destroyed")
    func stepTimeout() async throws {
        let started = ContinuousClock.now
        let (workspace, provider, result, log) = try await build(
            "  - shell: echo HANG\n    timeout: 300ms\n    retries: 1\n    retry_delay: 10ms\n")
        defer { workspace.remove() }
        let error = try #require(result.failure as? KilnError)
        #expect(
            error.message.contains("the step did not finish within 0.3 s (timeout:) (\(workspace.dir)/t/app.yaml:4:5)"), "\(error.message)")
        #expect(log.contains("attempt 1 of 2 failed: the step did not finish within 0.3 s"))
        #expect(provider.events.value.last == "destroy")
        let app = provider.events.value.drop { !$0.hasPrefix("run echo HANG") }
        #expect(!app.contains("shutdown") && app.count == 3, "\(app)")
        // The step hangs for an hour: well under that proves it was stopped. Alone it takes under
        // a second; in the whole suite beside CI's VMs on two cores it took 52 and 60 s.
        #expect(ContinuousClock.now - started < .seconds(600))
    }

    @Test("without timeout: a step has --step-timeout, and the error names the flag")
    func globalStepTimeout() async throws {
        var options = BuildOptions()
        options.stepTimeout = .milliseconds(200)
        let (workspace, _, result, _) = try await build("  - shell: echo HANG\n", options: options)
        defer { workspace.remove() }
        let error = try #require(result.failure as? KilnError)
        #expect(error.message.contains("the step did not finish within 0.2 s (--step-timeout)"), "\(error.message)")
    }

    @Test("when: and unless: keep a step to the providers and variable values they name; skipped steps are no key input")
    func conditions() async throws {
        let steps = """
              - shell: echo only-qemu
                when: {provider: qemu}
              - shell: echo not-qemu
                unless: {provider: qemu}
              - shell: echo fake-or-aws
                when: {provider: [aws, fake]}
              - shell: echo on-prod
                when: {var: {env: prod}}
              - shell: echo not-on-prod
                unless: {var: {env: prod}}

            """
        let (workspace, provider, result, log) = try await build(steps, vars: "vars: {env: dev}\n")
        defer { workspace.remove() }
        let image = try #require(try result.get().last?.image)
        let ran = provider.events.value.filter { $0.hasPrefix("run echo") }.map { $0.split(separator: " ")[2] }
        #expect(ran == ["base", "not-qemu", "fake-or-aws", "not-on-prod"])
        #expect(log.contains("skipping provision[0] shell echo only-qemu: when: provider qemu does not hold (provider fake)"), "\(log)")
        #expect(log.contains("skipping provision[3] shell echo on-prod: when: var.env == 'prod' does not hold"))
        let inputs = KeyInputs(json: image.keyInputs)
        #expect(inputs.entries["provision[0].shell"] == nil)
        #expect(inputs.entries["provision[1].shell"] != nil)
        #expect(inputs.entries["provision[3].shell"] == nil)
        // The qemu provider's key has the other steps.
        let template = try #require(try workspace.graph().0.template(family: "app"))
        let qemu = try BuildKeys.inputs(
            for: template, parent: nil, source: nil, secrets: [], provider: "qemu", conceal: KeyFixture.concealer)
        #expect(qemu.entries["provision[0].shell"] != nil && qemu.entries["provision[1].shell"] == nil)
    }

    @Test("sensitive_output: keeps a step's lines out of the log and the live view, and says how many it hid")
    func sensitiveOutput() async throws {
        let (workspace, _, result, log) = try await build(
            "  - shell: echo the-token-is-xyz\n    sensitive_output: true\n  - shell: echo visible\n")
        defer { workspace.remove() }
        _ = try result.get()
        #expect(!log.contains("ran: echo the-token-is-xyz"))
        #expect(log.contains("1 lines of output hidden (sensitive_output)"))
        #expect(log.contains("ran: echo visible"))
    }

    @Test("pause_before: waits before the step and says so")
    func pauseBefore() async throws {
        let started = ContinuousClock.now
        let (workspace, _, result, log) = try await build("  - shell: echo late\n    pause_before: 400ms\n")
        defer { workspace.remove() }
        _ = try result.get()
        #expect(ContinuousClock.now - started >= .milliseconds(400))
        #expect(log.contains("waiting 0.4 s before provision[0] shell echo late (pause_before)"))
    }

    @Test("a breakpoint in a run without a terminal is skipped with a log line, and the build goes on")
    func breakpointSkippedInCI() async throws {
        let (workspace, provider, result, log) = try await build(
            "  - breakpoint: {note: inspect nginx config}\n  - shell: echo after\n")
        defer { workspace.remove() }
        _ = try result.get()
        #expect(
            log.contains("skipping breakpoint at \(workspace.dir)/t/app.yaml:4:5: inspect nginx config: no terminal to pause at"), "\(log)")
        #expect(provider.events.value.contains { $0.hasPrefix("run echo after") })
    }

    @Test("--on-breakpoint=fail fails the build at the breakpoint, even with someone at the terminal")
    func breakpointFails() async throws {
        var options = BuildOptions()
        options.onBreakpoint = .fail
        let prompt = RecordingPrompt()
        options.prompt = prompt
        let (workspace, provider, result, _) = try await build(
            "  - breakpoint: {note: inspect nginx config}\n  - shell: echo after\n", options: options)
        defer { workspace.remove() }
        let error = try #require(result.failure as? KilnError)
        #expect(error.message.contains("failed at provision[0] breakpoint: reached breakpoint at"), "\(error.message)")
        #expect(error.message.contains("inspect nginx config (--on-breakpoint=fail)"))
        #expect(prompt.messages.value.isEmpty)
        #expect(!provider.events.value.contains { $0.hasPrefix("run echo after") })
        #expect(provider.events.value.last == "destroy")
    }

    @Test("with a terminal, a breakpoint pauses with the VM's ssh command; --debug pauses before every step")
    func breakpointPausesWithPrompt() async throws {
        var options = BuildOptions()
        let prompt = RecordingPrompt()
        options.prompt = prompt
        let (workspace, _, result, log) = try await build(
            "  - breakpoint: inspect nginx config\n  - shell: echo after\n", options: options)
        defer { workspace.remove() }
        _ = try result.get()
        let messages = prompt.messages.value
        #expect(messages.count == 1)
        #expect(messages.first?.contains("app: breakpoint at") == true)
        #expect(messages.first?.contains("ssh -i /fake/id_ed25519 -p 2222 -o UserKnownHostsFile=/fake/known_hosts root@127.0.0.1") == true)
        #expect(log.contains("paused: breakpoint at"))

        options.debug = true
        let debugPrompt = RecordingPrompt()
        options.prompt = debugPrompt
        let (again, _, debugResult, _) = try await build("  - shell: echo one\n  - shell: echo two\n", options: options)
        defer { again.remove() }
        _ = try debugResult.get()
        // The base's one step, then the app's two.
        #expect(
            debugPrompt.messages.value.map { $0.split(separator: "\n")[0] } == [
                "base: --debug: paused before provision[0] shell echo base",
                "app: --debug: paused before provision[0] shell echo one",
                "app: --debug: paused before provision[1] shell echo two",
            ])
    }

    @Test("shell-local runs on the build host in the template's directory, with the build's variables and the VM's SSH login")
    func shellLocal() async throws {
        let (workspace, _, result, log) = try await build(
            """
              - shell-local: |
                  pwd
                  echo "family=$KILN_IMAGE_FAMILY greeting=$KILN_VAR_greeting port=$KILN_SSH_PORT extra=$EXTRA"
                  echo made > from-host.txt
                  echo "token=$KILN_VAR_token"
                timeout: 30s
              - shell-local: {inline: "exit 7", env: {EXTRA: x}}

            """, vars: "vars: {greeting: hello, token: {sensitive: true, default: s3cr3t-value}}\n")
        defer { workspace.remove() }
        let error = try #require(result.failure as? KilnError)
        #expect(error.message.contains("failed at provision[1] shell-local exit 7: exit status 7 on the build host"), "\(error.message)")
        #expect(log.contains("] \(workspace.dir)/t\n"), "\(log)")
        #expect(log.contains("family=app greeting=hello port=2222 extra="))
        #expect(FileManager.default.fileExists(atPath: workspace.dir + "/t/from-host.txt"))
        // Sensitive variables reach the host command, and their values stay out of the log.
        #expect(log.contains("token=<sensitive>") && !log.contains("s3cr3t-value"))
    }

    @Test("an ansible: step needs ansible-playbook: without it on PATH the build stops before any machine starts")
    func ansibleMissing() async throws {
        let workspace = try Workspace()
        defer { workspace.remove() }
        // In a directory of its own: every YAML file beside the templates is a template.
        try FileManager.default.createDirectory(atPath: workspace.dir + "/t/ansible", withIntermediateDirectories: true)
        try "- hosts: all\n  tasks: []\n".write(toFile: workspace.dir + "/t/ansible/site.yml", atomically: true, encoding: .utf8)
        try "image: app\nfrom: {image: base}\nprovision:\n  - ansible: {playbook: ansible/site.yml}\n".write(
            toFile: workspace.dir + "/t/app.yaml", atomically: true, encoding: .utf8)
        let (set, graph) = try workspace.graph()
        let provider = FakeProvider()
        let saved = ProcessInfo.processInfo.environment["PATH"]
        setenv("PATH", "/nonexistent", 1)
        defer { setenv("PATH", saved ?? "/usr/bin:/bin", 1) }
        let builder = Builder(store: workspace.store, provider: provider, options: BuildOptions(), reporter: nil)
        await #expect(throws: KilnError.self) { try await builder.build(graph, secrets: set.sensitiveValues) }
        #expect(provider.events.value.isEmpty)
    }
}

extension Result {
    var failure: Failure? {
        if case .failure(let error) = self { return error }
        return nil
    }
}
