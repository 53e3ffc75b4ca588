import Foundation
import KilnCore
import Testing

extension VMBuildTests {
    @Test(
        "examples/ansible: a role installs a package and templates a file with a variable; a breakpoint pauses the build in a terminal until Enter"
    )
    func ansiblePlaybookAndBreakpoint() async throws {
        let dir = try await exampleAndScratchDirectory("ansible")
        defer { try? FileManager.default.removeItem(atPath: dir) }
        for name in ["web.yaml", "playbook"] {
            try FileManager.default.copyItem(atPath: Repo.root + "/examples/ansible/" + name, toPath: dir + "/" + name)
        }
        // The example, with a breakpoint before its last step.
        let template = try String(contentsOfFile: dir + "/web.yaml", encoding: .utf8)
        let marker = "  - name: drop the package lists\n"
        try #require(template.contains(marker))
        try template.replacingOccurrences(of: marker, with: "  - breakpoint: {note: look around}\n" + marker)
            .write(toFile: dir + "/web.yaml", atomically: true, encoding: .utf8)

        let session = try PTYSession(Repo.kiln, ["build", dir, "--home", SharedStore.shared.home])
        let paused = try await session.waitFor("press Enter to continue", timeout: .seconds(1500))
        try #require(paused, "the build did not pause at its breakpoint:\n\(session.text.suffix(3000))")
        // The printed command logs into the paused VM, host key pinned.
        // A terminal ends lines with CR LF, which Swift reads as one Character, not as "\n".
        let lines = session.text.replacingOccurrences(of: "\r", with: "").components(separatedBy: "\n")
            .map { $0.trimmingCharacters(in: .whitespaces) }
        let command = try #require(
            lines.firstIndex { $0.hasSuffix("log in with:") }.map { lines[$0 + 1] }, "no ssh command in:\n\(session.text.suffix(3000))")
        #expect(command.hasPrefix("ssh -i ") && command.contains("UserKnownHostsFile="), "\(command)")
        let visit = try await ProcessRunner.run(
            "/bin/sh", ["-c", command + " -o BatchMode=yes 'echo was-here > /root/breakpoint-visit'"], timeout: .seconds(120))
        #expect(visit.status == 0, "\(visit.stderr)")
        session.type("")
        let status = try await session.wait(timeout: .seconds(900))
        #expect(status == 0, "\(session.text.suffix(3000))")

        let image = try await SharedStore.shared.image("debian-12-greeter")
        let disk = try await FlatDisk(of: try #require(image["disk"] as? String))
        defer { disk.remove() }
        #expect(try await disk.cat("/etc/kiln-greeting") == "hello from ansible on port 8080\n")
        #expect(try await disk.exists("/usr/bin/tree"))
        #expect(try await disk.cat("/root/breakpoint-visit") == "was-here\n")
        let log = try await SharedStore.shared.kiln(["logs", try #require(image["name"] as? String)]).stdout
        #expect(log.contains("TASK [greeting : Install tree]"), "\(log.suffix(3000))")
        #expect(log.contains("TASK [greeting : Write the greeting]"))
        #expect(log.contains("paused: breakpoint at"))
        let inputs = try #require(image["key_inputs"] as? [String: String])
        #expect(inputs["provision[1].ansible.playbook"]?.hasPrefix("playbook/site.yml sha256:") == true, "\(inputs)")
    }

    @Test(
        "a step that fails twice passes on its third attempt; a hung attempt is killed in the guest before its retry; a failing Ansible task fails the build with the task's name"
    )
    func retriesAndFailingAnsibleTask() async throws {
        // raw: needs no Python in the guest. In a directory beside the template (a .yml beside it
        // would be read as a template): what a step reads from the host lies beneath the
        // template's directory (docs/templates.md).
        let playbook = """
            - hosts: all
              gather_facts: false
              tasks:
                - name: Say hello
                  ansible.builtin.raw: echo hello from ansible
                - name: Check the impossible
                  ansible.builtin.raw: echo about to fail; exit 3
                - name: Never reached
                  ansible.builtin.raw: touch /never
            """
        // The second "hangs once" attempt looks for the first one's sleep with shell builtins
        // only: a `cat` per process took over 5 s under TCG on a busy host (a CI run failed so).
        let (build, log) = try await failedBuild(
            "ansfail-app",
            """
            image: ansfail-app
            from: {image: debian-12-base}
            provision:
              - name: flaky
                shell: |
                  n=$(cat /run/kiln-attempts 2>/dev/null || echo 0)
                  echo $((n + 1)) > /run/kiln-attempts
                  echo "attempt $((n + 1)) in the guest"
                  [ "$n" -ge 2 ]
                retries: 2
                retry_delay: 1s
              - name: hangs once
                shell: |
                  if [ ! -e /run/kiln-hung ]; then touch /run/kiln-hung; sleep 3600; fi
                  for p in /proc/[0-9]*/comm; do
                    read -r comm 2>/dev/null <"$p" || continue
                    [ "$comm" != sleep ] || { echo "the first attempt's sleep still runs"; exit 1; }
                  done
                timeout: 8s
                retries: 1
                retry_delay: 1s
              - ansible: {playbook: playbook/site.yml}
            """, files: ["playbook/site.yml": playbook], flags: [])
        #expect(build.status == 1)
        #expect(
            build.stderr.contains("failed at provision[2] ansible site.yml: Ansible task 'Check the impossible' failed"),
            "\(build.stderr)")
        #expect(log.contains("attempt 1 of 3 failed: exit status 1"), "\(log)")
        #expect(log.contains("attempt 2 of 3 failed: exit status 1"))
        #expect(log.contains("attempt 3 in the guest"))
        #expect(!log.contains("attempt 3 of 3 failed"))
        #expect(log.contains("TASK [Say hello]"))
        // The timed-out attempt's processes in the guest were killed before the retry.
        #expect(log.contains("attempt 1 of 2 failed: the step did not finish within 8 s (timeout:)"))
        #expect(!log.contains("the first attempt's sleep still runs"))
        #expect(log.contains("attempt 2 of 2 of provision[1] hangs once"))
        #expect(!log.contains("TASK [Never reached]"))
    }
}
