import Foundation
import KilnCore
import KilnModel
import KilnProviders
import KilnTemplates
import Testing

@testable import KilnBuild

@Suite("Ansible galaxy requirements (no VM)")
struct AnsibleGalaxyTests {
    @Test("a galaxy_file's roles and collections are installed with ansible-galaxy into the build's scratch space")
    func installsRolesAndCollections() async throws {
        let dir = NSTemporaryDirectory() + "kiln-galaxy-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let fm = FileManager.default
        try fm.createDirectory(atPath: dir + "/src/hello/tasks", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/src/hello/meta", withIntermediateDirectories: true)
        try fm.createDirectory(atPath: dir + "/playbook", withIntermediateDirectories: true)
        try "- ansible.builtin.debug: {msg: hi}\n".write(toFile: dir + "/src/hello/tasks/main.yml", atomically: true, encoding: .utf8)
        try "galaxy_info: {author: kiln, description: test, license: MIT, min_ansible_version: '2.14', platforms: []}\ndependencies: []\n"
            .write(toFile: dir + "/src/hello/meta/main.yml", atomically: true, encoding: .utf8)
        try await ProcessRunner.check("tar", ["-czf", dir + "/hello.tar.gz", "-C", dir + "/src", "hello"])
        try await ProcessRunner.check("ansible-galaxy", ["collection", "init", "kiln.demo", "--init-path", dir + "/src"])
        try await ProcessRunner.check("ansible-galaxy", ["collection", "build", dir + "/src/kiln/demo", "--output-path", dir])
        let requirements = dir + "/playbook/requirements.yml"
        try """
        roles:
          - {name: hello, src: "file://\(dir)/hello.tar.gz"}
        collections:
          - {name: "\(dir)/kiln-demo-1.0.0.tar.gz", type: file}
        """.write(toFile: requirements, atomically: true, encoding: .utf8)
        try "- hosts: all\n".write(toFile: dir + "/playbook/site.yml", atomically: true, encoding: .utf8)

        let log = try BuildLog(path: dir + "/build.log", family: "app", secrets: [], sink: nil)
        let runner = AnsibleRunner(
            playbook: AnsiblePlaybook(playbook: dir + "/playbook/site.yml", galaxyFile: requirements),
            access: SSHAccess(host: "127.0.0.1", port: 22, user: "root", privateKey: "/k", knownHosts: "/h", controlPath: nil),
            workDirectory: dir + "/work", log: log, title: "provision[0] ansible site.yml")
        let installed = try await runner.installRequirements(requirements)
        log.close()
        #expect(installed.roles && installed.collections)
        #expect(fm.fileExists(atPath: dir + "/work/roles/hello/tasks/main.yml"))
        #expect(fm.fileExists(atPath: dir + "/work/collections/ansible_collections/kiln/demo/MANIFEST.json"))
        let text = try String(contentsOfFile: dir + "/build.log", encoding: .utf8)
        #expect(text.contains("[provision[0] ansible site.yml] - hello was installed successfully"), "\(text)")

        // A requirements file that names a role nobody has fails the step, naming the file.
        try "roles:\n  - {name: gone, src: \"file://\(dir)/missing.tar.gz\"}\n".write(
            toFile: requirements, atomically: true, encoding: .utf8)
        await #expect(throws: KilnError.self) { try await runner.installRequirements(requirements) }
    }
}
