import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnTemplates
import Yams

/// Runs an `ansible:` step: `ansible-playbook` on the build host, against the build VM alone,
/// through the build's own SSH connection.
///
/// The inventory is generated (one host, `kiln`), the login is the build's ephemeral key, and
/// the guest's host keys are pinned in a known_hosts file of this VM. Ansible's SSH commands go
/// through the build's master connection, so its many small logins cost no key exchange each.
struct AnsibleRunner: Sendable {
    let playbook: AnsiblePlaybook
    let access: SSHAccess
    /// A new directory of the build's scratch space (inventory, extra vars, galaxy installs).
    let workDirectory: String
    let log: BuildLog
    /// How the log names the step.
    let title: String

    /// The host tools an `ansible:` step needs; said before any VM boots.
    static func checkInstalled() throws {
        for tool in ["ansible-playbook"] where ProcessRunner.find(tool) == nil {
            throw KilnError(
                .notFound,
                "\(tool) is not installed on this host, and a template has an ansible: step: install ansible-core (Debian's package or PyPI's)"
            )
        }
    }

    /// Expects ``checkInstalled()`` to have passed (the builder calls it before any VM boots).
    func run(location: SourceLocation) async throws {
        let fm = FileManager.default
        try? fm.removeItem(atPath: workDirectory)
        try fm.createDirectory(atPath: workDirectory + "/tmp", withIntermediateDirectories: true)
        let inventory = workDirectory + "/inventory.json"
        let host: [String: Any] = [
            "ansible_host": access.host, "ansible_port": access.port, "ansible_user": access.user,
            "ansible_ssh_private_key_file": access.privateKey,
        ]
        try JSONSerialization.data(withJSONObject: ["all": ["hosts": ["kiln": host]]], options: [.sortedKeys])
            .write(to: URL(fileURLWithPath: inventory))
        // A file, not the command line: values may be sensitive, and a process's arguments are not.
        let extraVars = workDirectory + "/extra-vars.json"
        fm.createFile(atPath: extraVars, contents: Data(playbook.extraVars.utf8), attributes: [.posixPermissions: 0o600])

        var environment = [
            // Quoted only where needed: Ansible strips quotes around the whole value before it
            // splits it into words, so a value that starts and ends with a quote loses them.
            "ANSIBLE_SSH_ARGS": (access.options + ["-o", "ServerAliveInterval=10", "-o", "BatchMode=yes"])
                .map(ShellQuote.word).joined(separator: " "),
            "ANSIBLE_HOST_KEY_CHECKING": "True",
            // One SSH command per module instead of three: seconds per task under TCG.
            "ANSIBLE_PIPELINING": "True",
            "ANSIBLE_NOCOLOR": "1", "ANSIBLE_FORCE_COLOR": "0",
            // kiln reads the default callback's TASK headers and fatal: lines.
            "ANSIBLE_STDOUT_CALLBACK": "default",
            "ANSIBLE_RETRY_FILES_ENABLED": "False",
            "ANSIBLE_LOCAL_TEMP": workDirectory + "/tmp",
            "ANSIBLE_PYTHON_INTERPRETER": "auto_silent",
            "PYTHONUNBUFFERED": "1",
        ]
        if let galaxy = playbook.galaxyFile {
            let (roles, collections) = try await installRequirements(galaxy)
            if roles {
                environment["ANSIBLE_ROLES_PATH"] =
                    "\(workDirectory)/roles:\(playbook.directory)/roles:~/.ansible/roles:/usr/share/ansible/roles:/etc/ansible/roles"
            }
            if collections {
                environment["ANSIBLE_COLLECTIONS_PATH"] =
                    "\(workDirectory)/collections:~/.ansible/collections:/usr/share/ansible/collections"
            }
        }
        let progress = Locked(Progress())
        let log = self.log
        let title = self.title
        let result = try await ProcessRunner.run(
            "ansible-playbook", ["-i", inventory, "--extra-vars", "@" + extraVars, playbook.playbook],
            environment: environment, workingDirectory: playbook.directory, collectLimit: 0
        ) { line in
            progress.withLock { $0.read(line.text) }
            // Ansible spaces its sections with empty lines; the log's timestamps do that already.
            if !line.text.isEmpty { log.emit(title, line.text) }
        }
        guard !result.succeeded else { return }
        throw KilnError(.buildFailed, progress.value.failure(status: result.status) + " (\(location))")
    }

    /// What the playbook's output said so far: the task running, and the one that failed.
    struct Progress: Sendable {
        var task: String?
        var failedTask: String?
        var unreachable = false
        var noPython = false

        mutating func read(_ line: String) {
            if line.hasPrefix("TASK ["), let close = line.lastIndex(of: "]") {
                task = String(line[line.index(line.startIndex, offsetBy: 6)..<close])
            } else if failedTask == nil && (line.hasPrefix("fatal: [") || line.hasPrefix("failed: [")) {
                failedTask = task ?? "?"
                unreachable = line.contains("UNREACHABLE!")
            }
            if line.contains("No python interpreters found") || line.contains("python3: not found")
                || line.contains("python: not found")
            {
                noPython = true
            }
        }

        func failure(status: Int32) -> String {
            guard let failedTask else { return "ansible-playbook exited with status \(status)" }
            if noPython {
                return
                    "Ansible task '\(failedTask)' failed: the guest has no Python, which Ansible's modules need (install python3 in an earlier step, or include it in the base)"
            }
            if unreachable { return "Ansible task '\(failedTask)' could not reach the build VM" }
            return "Ansible task '\(failedTask)' failed (ansible-playbook exit status \(status))"
        }
    }

    /// `ansible-galaxy` installs the roles and collections `file` lists into the work directory;
    /// returns which of the two it had.
    func installRequirements(_ file: String) async throws -> (roles: Bool, collections: Bool) {
        let text = try String(contentsOfFile: file, encoding: .utf8)
        let node = try? Yams.compose(yaml: text)
        // The old format is a plain list of roles; the new one a mapping with roles: and collections:.
        let roles = node?.sequence != nil || node?.mapping?["roles"] != nil
        let collections = node?.mapping?["collections"] != nil
        let log = self.log
        let title = self.title
        for (kind, wanted) in [("role", roles), ("collection", collections)] where wanted {
            let target = workDirectory + (kind == "role" ? "/roles" : "/collections")
            let result = try await ProcessRunner.run(
                "ansible-galaxy", [kind, "install", "-r", file, "-p", target],
                environment: ["ANSIBLE_NOCOLOR": "1", "ANSIBLE_LOCAL_TEMP": workDirectory + "/tmp"],
                workingDirectory: playbook.directory, collectLimit: 0
            ) { line in log.emit(title, line.text) }
            guard result.succeeded else {
                throw KilnError(
                    .buildFailed,
                    "ansible-galaxy could not install the \(kind)s of \(file.split(separator: "/").last ?? "") (exit status \(result.status))"
                )
            }
        }
        return (roles, collections)
    }
}
