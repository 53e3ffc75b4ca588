import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnStore
import KilnTemplates
import KilnTestSupport
import Testing

@testable import KilnBuild

/// `${var.NAME}` in script text: a hostile value (from `--var`, `KILN_VAR_NAME` or a default)
/// must reach the script as data. Before, the value was pasted into the text and
/// `--var msg='$(touch /tmp/x)'` ran `touch` on the build host.
@Suite("Variables never become shell code")
struct ShellInjectionTests {
    static let hostile = [
        "$(touch PWNED)", "`touch PWNED`", "'; touch PWNED; '", "\"; touch PWNED; \"", "x\ntouch PWNED", "; touch PWNED",
        "${IFS}touch${IFS}PWNED", "a b  c*",
    ]

    final class Templates {
        let dir = NSTemporaryDirectory() + "kiln-injection-" + UUID().uuidString
        deinit { try? FileManager.default.removeItem(atPath: dir) }

        init(_ steps: String) throws {
            try FileManager.default.createDirectory(atPath: dir + "/t", withIntermediateDirectories: true)
            let disk = Data(repeating: 7, count: 1 << 20)
            try disk.write(to: URL(fileURLWithPath: dir + "/t/base.raw"))
            try """
            image: base
            from: {file: {path: base.raw, sha256: \(Hashing.sha256Hex(disk))}}
            vars:
              msg: {default: plain}
            provision:
            \(steps)
            """.write(toFile: dir + "/t/base.yaml", atomically: true, encoding: .utf8)
        }

        func load(_ msg: String) throws -> TemplateSet {
            try TemplateLoader(overrides: ["msg": msg], environment: [:]).load(path: dir + "/t")
        }
    }

    @Test("shell-local: hostile values run nothing on the host, and a quoted reference gives the value byte for byte")
    func shellLocal() async throws {
        let t = try Templates(
            """
              - shell-local: printf '%s' "${var.msg}" > quoted.out
              - shell-local: echo unquoted ${var.msg} > unquoted.out
              - shell-local: {inline: ["printf '%s' \\"${var.msg}\\" > listed.out"]}
            """)
        for value in Self.hostile {
            let set = try t.load(value)
            let store = try Store(root: t.dir + "/home-" + UUID().uuidString)
            let builder = Builder(store: store, provider: FakeProvider(), options: BuildOptions(), reporter: nil)
            _ = try await builder.build(try ImageGraph(set), secrets: [])
            #expect(!FileManager.default.fileExists(atPath: t.dir + "/t/PWNED"), "value \(value.debugDescription) ran a command")
            #expect(try String(contentsOfFile: t.dir + "/t/quoted.out", encoding: .utf8) == value)
            #expect(try String(contentsOfFile: t.dir + "/t/listed.out", encoding: .utf8) == value)
        }
    }

    @Test("shell: the guest's script names ${KILN_VAR_msg}; the value travels in the step's environment only")
    func guestShell() async throws {
        let t = try Templates(
            """
              - shell: echo "${var.msg}" > /etc/msg
              - shell: {inline: "echo ${var.msg}", env: {OTHER: "${var.msg}"}}
              - shell: {inline: "echo ${var.msg}", env: {KILN_VAR_msg: overridden}}
            """)
        let value = "$(touch PWNED)"
        let set = try t.load(value)
        let steps = try #require(set.template(family: "base")).steps
        guard case .shell(let inline?, nil, let env) = steps[0].kind else { Issue.record("\(steps[0].kind)"); return }
        #expect(inline == "echo \"${KILN_VAR_msg}\" > /etc/msg" && !inline.contains(value))
        #expect(env == [EnvVar(name: "KILN_VAR_msg", value: value)])
        guard case .shell(_, nil, let env1) = steps[1].kind else { return }
        #expect(env1 == [EnvVar(name: "OTHER", value: value), EnvVar(name: "KILN_VAR_msg", value: value)])
        // `env:` naming the variable itself wins over kiln's.
        guard case .shell(_, nil, let env2) = steps[2].kind else { return }
        #expect(env2 == [EnvVar(name: "KILN_VAR_msg", value: "overridden")])

        let provider = FakeProvider()
        let store = try Store(root: t.dir + "/home")
        _ = try await Builder(store: store, provider: provider, options: BuildOptions(), reporter: nil)
            .build(try ImageGraph(set), secrets: [])
        let runs = provider.events.value.filter { $0.hasPrefix("run echo") }
        #expect(runs.count == 3 && runs.allSatisfy { !$0.hasPrefix("run echo \"$(touch") })
    }

    @Test("a value holding a NUL byte is an error at the variable's declaration")
    func nul() throws {
        let t = try Templates("  - shell: echo ${var.msg}")
        #expect {
            _ = try t.load("a\u{0}b")
        } throws: { error in
            "\(error)".contains("base.yaml:4:3: error: variable 'msg' holds a NUL byte")
        }
    }

    @Test("$${ still writes a literal ${ in script text, and other strings still get the value itself")
    func literalsAndOtherStrings() throws {
        let t = try Templates(
            """
              - shell: echo $${HOME} ${var.msg}
              - file: {src: base.raw, dest: "/opt/${var.msg}"}
            """)
        let steps = try #require(try t.load("v1").template(family: "base")).steps
        guard case .shell(let inline?, _, _) = steps[0].kind else { return }
        #expect(inline == "echo ${HOME} ${KILN_VAR_msg}")
        guard case .file(_, let dest, _) = steps[1].kind else { return }
        #expect(dest == "/opt/v1")
    }
}
