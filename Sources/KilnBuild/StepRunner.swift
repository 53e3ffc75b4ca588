import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnTemplates

/// Where an interactive build waits for its user: at a `breakpoint:` step, or before every step
/// under `kiln build --debug`.
public protocol BreakpointPrompt: Sendable {
    /// Shows `message` and returns once the user continues; throws to stop the build.
    func pause(_ message: String) async throws
}

/// Runs one image's provision steps on its machine (or its test steps on its test boot), with
/// each step's options: conditions, pauses, breakpoints, timeouts, retries and hidden output.
struct StepRunner: Sendable {
    let options: BuildOptions
    let template: Template
    /// The provider's name (for `when:`/`unless:`), the build's id and its scratch directory.
    let provider, buildID, scratch: String
    let log: BuildLog
    /// Called as each step that runs begins (the builder's step events).
    let onEnter: @Sendable (String) -> Void
    /// More environment for `shell-local:` steps (a test boot's forwarded ports).
    var localEnvironment: [String: String] = [:]

    /// The longest wait between two attempts of a step, however many retries it has.
    static let maxRetryDelay: Duration = .seconds(600)

    /// How one step of ``runAll(_:on:onResult:)`` went.
    enum Outcome {
        case skipped(String)
        case passed(Duration)
        case failed(Duration, any Error)
    }

    /// Runs `steps` in order (the template's provision steps by default); stops at the first
    /// that fails and rethrows its error, after `onResult` has heard of it.
    func runAll(
        _ steps: [Step]? = nil, on machine: any Machine, onResult: (Step, String, Outcome) -> Void = { _, _, _ in }
    ) async throws {
        for step in steps ?? template.steps {
            let title = log.redact(step.title)
            if let reason = template.skipReason(of: step, provider: provider) {
                log.emit("kiln", "skipping \(title): \(reason)")
                onResult(step, title, .skipped(reason))
                continue
            }
            onEnter(title)
            let started = ContinuousClock.now
            do {
                try Task.checkCancellation()
                try await run(step, title: title, on: machine)
            } catch {
                onResult(step, title, .failed(ContinuousClock.now - started, error))
                throw error
            }
            onResult(step, title, .passed(ContinuousClock.now - started))
        }
    }

    private func run(_ step: Step, title: String, on machine: any Machine) async throws {
        log.clearLastLines()
        let isBreakpoint = if case .breakpoint = step.kind { true } else { false }
        // A breakpoint pauses by itself; a second pause before it would ask for Enter twice.
        if options.debug && !isBreakpoint {
            try await pause(at: step, on: machine, reason: "--debug: paused before \(title)")
        }
        if let pause = step.options.pauseBefore, pause > .zero {
            log.emit("kiln", "waiting \(pause.kilnDescription) before \(title) (pause_before)")
            try await Task.sleep(for: pause)
        }
        if case .breakpoint(let note) = step.kind {
            try await breakpoint(step, note: note, title: title, on: machine)
            return
        }
        log.emit("kiln", "step \(title)")
        let started = ContinuousClock.now
        let attempts = step.options.retries + 1
        var delay = step.options.retryDelay
        for attempt in 1...attempts {
            do {
                try await attemptOnce(step, title: title, on: machine)
                break
            } catch let error as KilnError where attempt < attempts && Self.isRetryable(error) {
                log.emit(
                    "kiln",
                    "attempt \(attempt) of \(attempts) failed: \(error.message); retrying in \(delay.kilnDescription) (retries: \(step.options.retries))"
                )
                try await Task.sleep(for: delay)
                delay = min(delay * 2, Self.maxRetryDelay)
                log.clearLastLines()
                log.emit("kiln", "attempt \(attempt + 1) of \(attempts) of \(title)")
            }
        }
        log.emit("kiln", "step done in \((ContinuousClock.now - started).kilnDescription)")
    }

    /// A failed command or a timeout may pass on a second try; a VM that died, a missing tool,
    /// or a cancelled build will not.
    static func isRetryable(_ error: KilnError) -> Bool {
        error.code == .buildFailed || error.code == .timeout
    }

    private func attemptOnce(_ step: Step, title: String, on machine: any Machine) async throws {
        let timeout = step.options.timeout ?? options.stepTimeout
        if step.options.sensitiveOutput { log.mute(title) }
        defer {
            if step.options.sensitiveOutput {
                let hidden = log.unmute(title)
                log.emit("kiln", "\(hidden) lines of output hidden (sensitive_output)")
            }
        }
        do {
            try await Timeout.run(timeout) {
                try await execute(step, title: title, on: machine, timeout: timeout)
            }
        } catch let error as KilnError where error.code == .timeout {
            let limit = step.options.timeout != nil ? "timeout:" : "--step-timeout"
            throw KilnError(.timeout, "the step did not finish within \(timeout.kilnDescription) (\(limit)) (\(step.location))")
        }
    }

    private func execute(_ step: Step, title: String, on machine: any Machine, timeout: Duration) async throws {
        switch step.kind {
        case .shell(let inline, let script, let env):
            let text = try inline ?? String(contentsOfFile: script!, encoding: .utf8)
            let environment = [EnvVar(name: "KILN_IMAGE_FAMILY", value: template.family)] + env
            let status = try await machine.run(script: text, environment: environment, title: title, log: log, timeout: timeout)
            guard status == 0 else { throw KilnError(.buildFailed, "exit status \(status) (\(step.location))") }
        case .file(let src, let dest, let contentsOnly):
            try await machine.upload(source: src, destination: dest, contentsOnly: contentsOnly, title: title, log: log)
        case .download(let src, let dest):
            try FileManager.default.createDirectory(
                atPath: URL(fileURLWithPath: dest).deletingLastPathComponent().path, withIntermediateDirectories: true)
            try await machine.download(source: src, destination: dest, title: title, log: log)
            log.emit("kiln", "downloaded \(src) to \(dest)")
        case .shellLocal(let inline, let script, let env):
            try await runLocal(step, inline: inline, script: script, env: env, title: title, on: machine)
        case .ansible(let playbook):
            guard let access = try await machine.sshAccess() else {
                throw KilnError(.providerFailed, "the \(provider) provider's machines take no SSH logins, which Ansible needs")
            }
            let runner = AnsibleRunner(
                playbook: playbook, access: access, workDirectory: scratch + "/ansible-\(step.index)", log: log, title: title)
            try await runner.run(location: step.location)
        case .breakpoint:
            break
        }
    }

    /// `shell-local:`: the script runs on the host, in the template's directory, with the
    /// build's variables and the VM's SSH login in its environment.
    private func runLocal(
        _ step: Step, inline: String?, script: String?, env: [EnvVar], title: String, on machine: any Machine
    ) async throws {
        let path: String
        if let script {
            path = script
        } else {
            path = scratch + "/shell-local-\(step.index).sh"
            try (inline ?? "").write(toFile: path, atomically: true, encoding: .utf8)
        }
        let directory = URL(fileURLWithPath: template.file).deletingLastPathComponent().path
        var environment = [
            "KILN_IMAGE_FAMILY": template.family, "KILN_BUILD_ID": buildID, "KILN_PROVIDER": provider,
            "KILN_TEMPLATE_DIR": directory,
        ]
        for variable in template.variables { environment["KILN_VAR_\(variable.name)"] = variable.value }
        if let access = try await machine.sshAccess() {
            environment["KILN_SSH_HOST"] = access.host
            environment["KILN_SSH_PORT"] = String(access.port)
            environment["KILN_SSH_USER"] = access.user
            environment["KILN_SSH_KEY"] = access.privateKey
            environment["KILN_SSH_KNOWN_HOSTS"] = access.knownHosts
        }
        environment.merge(localEnvironment) { _, new in new }
        for variable in env { environment[variable.name] = variable.value }
        let log = self.log
        let result = try await ProcessRunner.run(
            "/bin/sh", ["-e", path], environment: environment, workingDirectory: directory, collectLimit: 0
        ) { line in log.emit(title, line.text) }
        guard result.succeeded else { throw KilnError(.buildFailed, "exit status \(result.status) on the build host (\(step.location))") }
    }

    private func breakpoint(_ step: Step, note: String?, title: String, on machine: any Machine) async throws {
        let what = "breakpoint at \(step.location)" + (note.map { ": " + log.redact($0) } ?? "")
        switch options.onBreakpoint {
        case .fail:
            throw KilnError(.buildFailed, "reached \(what) (--on-breakpoint=fail)")
        case .skip:
            log.emit("kiln", "skipping \(what) (--on-breakpoint=skip)")
        case .pause:
            guard options.prompt != nil else {
                log.emit("kiln", "skipping \(what): no terminal to pause at (standard input is not one)")
                return
            }
            try await pause(at: step, on: machine, reason: what)
        }
    }

    /// Tells the user how to log into the running VM, then waits for them.
    private func pause(at step: Step, on machine: any Machine, reason: String) async throws {
        guard let prompt = options.prompt else { return }
        var message = "\(template.family): \(reason)\n"
        if let access = try await machine.sshAccess() {
            message += "  the build VM is running; log in with:\n    \(access.command)\n"
        }
        message += "  press Enter to continue the build (Ctrl-C stops it and removes the VM)"
        log.emit("kiln", "paused: \(reason)")
        let paused = ContinuousClock.now
        try await prompt.pause(message)
        log.emit("kiln", "continued after \((ContinuousClock.now - paused).kilnDescription)")
    }
}
