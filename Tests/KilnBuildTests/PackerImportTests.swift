import Foundation
import KilnCore
import KilnTestSupport
import Testing
import Yams

/// `kiln import packer` on three templates written the way public Packer templates are (HCL2 and
/// legacy JSON, examples/packer/), and on the HCL reader's error paths. The VM suite builds one.
@Suite("kiln import packer (no VM)")
final class PackerImportTests {
    let work = NSTemporaryDirectory() + "kiln-packer-" + UUID().uuidString

    init() throws {
        try FileManager.default.copyItem(atPath: CLI.root + "/examples/packer", toPath: work)
        // The disk the imported templates name: a real (empty) qcow2, as validate checks it exists.
        let create = Process()
        create.executableURL = URL(fileURLWithPath: "/usr/bin/qemu-img")
        create.arguments = ["create", "-q", "-f", "qcow2", work + "/disk.qcow2", "64M"]
        try create.run()
        create.waitUntilExit()
    }

    deinit { try? FileManager.default.removeItem(atPath: work) }

    func imported(_ file: String) async throws -> (result: ProcessResult, template: [String: Any]) {
        let result = try await CLI.kiln(["import", "packer", work + "/" + file])
        try #require(result.status == 0, "\(result.stderr)")
        return (result, try #require(try Yams.load(yaml: result.stdout) as? [String: Any]))
    }

    func warnings(_ result: ProcessResult) -> [String] {
        result.stderr.split(separator: "\n").map { String($0.dropFirst(work.count + 1)) }
    }

    @Test(
        "an HCL2 template: variables (sensitive kept), the qemu disk, memory and CPUs, shell/file/shell-local with their options; functions and post-processors reported at their lines"
    )
    func hcl() async throws {
        let (result, template) = try await imported("debian.pkr.hcl")
        #expect(template["image"] as? String == "debian")
        #expect(
            ((template["from"] as? [String: Any])?["file"] as? [String: String]) == [
                "path": "${var.disk}", "sha256": "${var.disk_checksum}",
            ])
        #expect((template["provider"] as? [String: Any])?["qemu"] as? [String: Int] == ["memory": 1024, "cpus": 2])
        let vars = try #require(template["vars"] as? [String: [String: Any]])
        #expect(vars["api_token"]?["sensitive"] as? Bool == true && vars["release"]?["default"] as? String == "1.0")
        let steps = try #require(template["provision"] as? [[String: Any]])
        #expect(steps.count == 4)
        #expect(
            (steps[0]["shell"] as? [String: [String]])?["inline"] == [
                "mkdir -p /etc/shop", "echo \"Built from a Packer template\" > /etc/motd",
            ], "a literal local is substituted")
        let setup = try #require(steps[1]["shell"] as? [String: Any])
        #expect(setup["script"] as? String == "scripts/setup.sh")
        #expect(setup["env"] as? [String: String] == ["RELEASE": "${var.release}", "API_TOKEN": "${var.api_token}"])
        #expect(steps[1]["retries"] as? Int == 2 && steps[1]["pause_before"] as? String == "1s" && steps[1]["timeout"] as? String == "5m")
        #expect(steps[2]["file"] as? [String: String] == ["src": "files/shop.conf", "dest": "/etc/shop/shop.conf"])
        #expect(steps[3]["shell-local"] != nil)
        let lines = warnings(result)
        #expect(
            lines.contains { $0.hasPrefix("debian.pkr.hcl:67:5: warning: environment_vars: ${timestamp()} is not evaluated") }, "\(lines)")
        #expect(lines.contains { $0.hasPrefix("debian.pkr.hcl:82:3: warning: post-processor 'compress' is not carried over") })
        #expect(result.stdout.hasPrefix("# Imported from \(work)/debian.pkr.hcl by kiln import packer"))

        // It validates (the disk is the test's), written beside its scripts and files.
        let written = try await CLI.kiln(["import", "packer", work + "/debian.pkr.hcl", "--output", work + "/"])
        #expect(written.status == 0 && written.stdout.contains("wrote \(work)/debian.yaml"), "\(written.stderr)")
        let validate = try await CLI.kiln(["validate", work + "/debian.yaml", "--var", "disk=\(work)/disk.qcow2"])
        #expect(validate.status == 0, "\(validate.stderr)")
        let again = try await CLI.kiln(["import", "packer", work + "/debian.pkr.hcl", "--output", work + "/"])
        #expect(again.status == 2 && again.stderr.contains("exists (--force replaces it)"))
    }

    @Test(
        "a legacy JSON template: {{user}} becomes ${var}, sensitive-variables are sensitive; reboots, Windows steps, template functions and post-processor chains are reported"
    )
    func json() async throws {
        let (result, template) = try await imported("legacy.json")
        #expect(template["image"] as? String == "debian-app")
        let vars = try #require(template["vars"] as? [String: [String: Any]])
        #expect(vars["db_password"]?["sensitive"] as? Bool == true && vars["db_password"]?["default"] == nil)
        let steps = try #require(template["provision"] as? [[String: Any]])
        #expect(steps.count == 2, "the rebooting step and the Windows one are left out: \(steps)")
        #expect((steps[0]["shell"] as? [String: Any])?["env"] as? [String: String] == ["RELEASE": "${var.release}"])
        let lines = warnings(result)
        for expected in [
            "legacy.json:18:7: warning: disk_size is not carried over", "legacy.json:19:7: warning: ssh_username debian",
            "legacy.json:29:7: warning: execute_command is not carried over",
            "legacy.json:30:7: warning: environment_vars: {{timestamp}} is not evaluated",
            "legacy.json:40:7: warning: shell provisioner left out: expect_disconnect",
            "legacy.json:42:5: warning: windows-restart provisioner is not carried over",
            "legacy.json:47:6: warning: post-processor 'compress'", "legacy.json:47:52: warning: post-processor 'checksum'",
        ] {
            #expect(lines.contains { $0.hasPrefix(expected) }, "\(expected) in \(lines)")
        }
        _ = try await CLI.kiln(["import", "packer", work + "/legacy.json", "--output", work + "/debian-app.yaml"])
        let validate = try await CLI.kiln(
            ["validate", work + "/debian-app.yaml", "--var", "disk=\(work)/disk.qcow2", "--var", "db_password=s3cret"])
        #expect(validate.status == 0, "\(validate.stderr)")
    }

    @Test(
        "an installer template: boot_command is reported and the base starts from debootstrap; ansible's extra vars carried, only/except honoured, a breakpoint kept"
    )
    func installer() async throws {
        let (result, template) = try await imported("installer.pkr.hcl")
        #expect(template["from"] as? [String: [String: String]] == ["debootstrap": ["suite": "bookworm"]])
        let steps = try #require(template["provision"] as? [[String: Any]])
        #expect(steps.count == 2)
        #expect(
            (steps[0]["ansible"] as? [String: Any])?["extra_vars"] as? [String: String] == ["greeting": "hello", "port": "8080"])
        #expect((steps[1]["breakpoint"] as? [String: String]) == ["note": "look around"])
        let lines = warnings(result)
        #expect(
            lines.contains { $0.hasPrefix("installer.pkr.hcl:11:3: warning: an installer ISO driven by boot_command is not carried over") })
        #expect(lines.contains { $0.hasPrefix("installer.pkr.hcl:25:5: warning: ansible extra_arguments '-vv'") })
        #expect(
            lines.contains {
                $0.hasPrefix("installer.pkr.hcl:28:3: warning: shell provisioner left out: its only/except excludes source 'netinst'")
            })
        _ = try await CLI.kiln(["import", "packer", work + "/installer.pkr.hcl", "--output", work + "/"])
        let validate = try await CLI.kiln(["validate", work + "/netinst.yaml"])
        #expect(validate.status == 0, "\(validate.stderr)")
    }

    @Test("the HCL reader's errors: file:line:col: error:, exit 2, nothing written")
    func hclErrors() async throws {
        let cases: [(String, String)] = [
            ("source \"qemu\" \"x\" {\n  memory = 1024\n", "3:1: error: a block is not closed: expected '}'"),
            ("variable \"x\" {\n  default = \"open\n}\n", "2:13: error: a string is not closed"),
            ("source \"qemu\" \"x\" {\n  memory 1024\n}\n", "2:10: error: expected '=' or '{' after 'memory'"),
            ("locals {\n  a = <<EOF\nno end\n", "2:7: error: a heredoc <<EOF is not closed"),
            ("/* never closed\nsource \"qemu\" \"x\" {}\n", "1:1: error: a /* comment is not closed"),
            ("locals {\n  a = [1, 2\n  b = 3\n}\n", "3:3: error: expected ',' or ']' in a list"),
            ("source \"amazon-ebs\" \"x\" {\n}\n", "no qemu builder or source to import (found: amazon-ebs)"),
            // Hostile nesting fails with an error, never a crash.
            ("locals {\n  a = " + String(repeating: "[", count: 100_000) + "\n}\n", "2:71: error: nested more than 64 levels deep"),
        ]
        for (index, (text, expected)) in cases.enumerated() {
            let file = work + "/bad\(index).pkr.hcl"
            try text.write(toFile: file, atomically: true, encoding: .utf8)
            let result = try await CLI.kiln(["import", "packer", file, "--output", work + "/out\(index)/"])
            #expect(result.status == 2, "\(text): \(result.stderr)")
            #expect(result.stderr.contains(expected), "\(text): \(result.stderr)")
            #expect(!FileManager.default.fileExists(atPath: work + "/out\(index)"))
        }
        try "{\"builders\": [{\"type\": \"qemu\",}".write(toFile: work + "/bad.json", atomically: true, encoding: .utf8)
        let json = try await CLI.kiln(["import", "packer", work + "/bad.json"])
        #expect(json.status == 2 && json.stderr.contains("not valid JSON"), "\(json.stderr)")
    }

    @Test("heredocs (<<-EOF strips the indent) and $${ literals carry over; an inline script with ${var.x} keeps kiln's spelling")
    func heredocs() async throws {
        let text = """
            source "qemu" "h" {
              disk_image   = true
              iso_url      = "disk.qcow2"
              iso_checksum = "none"
            }
            build {
              provisioner "shell" {
                inline = [<<-EOF
                  echo "$${HOME} and ${var.who}"
                    indented
                  EOF
                ]
              }
            }
            variable "who" {
              default = "me"
            }
            """
        try text.write(toFile: work + "/h.pkr.hcl", atomically: true, encoding: .utf8)
        let result = try await CLI.kiln(["import", "packer", work + "/h.pkr.hcl"])
        #expect(result.status == 0, "\(result.stderr)")
        let template = try #require(try Yams.load(yaml: result.stdout) as? [String: Any])
        let steps = try #require(template["provision"] as? [[String: Any]])
        #expect((steps[0]["shell"] as? [String: [String]])?["inline"] == ["echo \"$${HOME} and ${var.who}\"\n  indented\n"])
        // iso_checksum none on a local disk: its hash now is pinned, and said so.
        let sha = try Hashing.sha256Hex(fileAt: work + "/disk.qcow2")
        #expect(((template["from"] as? [String: Any])?["file"] as? [String: String])?["sha256"] == sha)
        #expect(result.stderr.contains("h.pkr.hcl:3:3: warning: iso_checksum gave no SHA-256: the disk's hash now"), "\(result.stderr)")
    }
}
