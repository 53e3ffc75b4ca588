import Foundation
import KilnCore
import KilnTestSupport
import Testing

enum CLI {
    static let root = KilnBinary.repositoryRoot

    static func kiln(_ arguments: [String], environment: [String: String] = [:]) async throws -> ProcessResult {
        try await KilnBinary.run(arguments, environment: environment)
    }
}

@Suite("Command line (no VM)")
final class CLITests {
    let home = NSTemporaryDirectory() + "kiln-cli-" + UUID().uuidString

    deinit { try? FileManager.default.removeItem(atPath: home) }

    @Test("validate prints every error as file:line:col: error:, exits 2 and writes nothing")
    func validateErrors() async throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-templates-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: app\nfrom: {image: base}\nprovision:\n  - shell: echo ${var.x}\n".write(
            toFile: dir + "/app.yaml", atomically: true, encoding: .utf8)
        try "image: base\nfrom: {image: app}\nlables: {}\n".write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        for command in ["validate", "plan", "build"] {
            let result = try await CLI.kiln([command, dir, "--home", home])
            #expect(result.status == 2, "\(command) must exit 2")
            let lines = result.stderr.split(separator: "\n").map(String.init)
            #expect(lines.contains("\(dir)/app.yaml:4:12: error: undefined variable 'x'"), "\(command): \(result.stderr)")
            #expect(
                lines.contains(
                    "\(dir)/base.yaml:3:1: error: unknown key 'lables' in a template: expected image, description, from, provider, vars, provision, test, labels, lifecycle, allow_secrets"
                ))
            // The two files name each other: the cycle is reported in the same run.
            #expect(
                lines.contains("\(dir)/app.yaml:2:7: error: cycle in the image graph: app -> base -> app"), "\(command): \(result.stderr)")
            #expect(lines.last == "kiln: 3 errors; nothing was built")
            #expect(!FileManager.default.fileExists(atPath: home), "\(command) wrote to the store")
        }
    }

    @Test("validate reports a schema error, a missing src file, an unknown parent and a cycle in one run, in file order")
    func validateReportsEverything() async throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-all-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let files = [
            "a.yaml": "image: a\nfrom: {debootstrap: {suite: bookworm}}\nprovision:\n  - bogus: 1\n",
            "b.yaml": "image: b\nfrom: {image: a}\nprovision:\n  - file: {src: nothere.txt, dest: /x}\n",
            "c.yaml": "image: c\nfrom: {image: nosuch}\n",
            "d.yaml": "image: d\nfrom: {image: e}\n",
            "e.yaml": "image: e\nfrom: {image: d}\n",
        ]
        for (name, text) in files { try text.write(toFile: "\(dir)/\(name)", atomically: true, encoding: .utf8) }
        let result = try await CLI.kiln(["validate", dir, "--home", home])
        #expect(result.status == 2)
        let lines = result.stderr.split(separator: "\n").map(String.init)
        #expect(lines.count == 5, "\(result.stderr)")
        let prefixes = [
            "a.yaml:4:5: error: unknown key 'bogus'", "b.yaml:4:17: error: file src nothere.txt does not exist",
            "c.yaml:2:7: error: unknown parent family 'nosuch'", "d.yaml:2:7: error: cycle in the image graph: d -> e -> d",
        ]
        for (line, prefix) in zip(lines, prefixes) { #expect(line.hasPrefix("\(dir)/\(prefix)"), "\(line)") }
        #expect(lines.last == "kiln: 4 errors; nothing was built")

        // A file whose family cannot be read may define the parent another file names: no
        // "unknown parent" guess then, only the file's own error.
        try "image: [broken\n".write(toFile: "\(dir)/a.yaml", atomically: true, encoding: .utf8)
        try FileManager.default.removeItem(atPath: "\(dir)/b.yaml")
        let partial = try await CLI.kiln(["validate", dir, "--home", home])
        #expect(partial.status == 2)
        #expect(partial.stderr.contains("\(dir)/a.yaml:"), "\(partial.stderr)")
        #expect(!partial.stderr.contains("unknown parent"), "\(partial.stderr)")
        #expect(partial.stderr.contains("cycle in the image graph: d -> e -> d"), "\(partial.stderr)")
    }

    @Test("a cycle is reported with its path")
    func cycle() async throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-cycle-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: a\nfrom: {image: b}\n".write(toFile: dir + "/a.yaml", atomically: true, encoding: .utf8)
        try "image: b\nfrom: {image: a}\n".write(toFile: dir + "/b.yaml", atomically: true, encoding: .utf8)
        let result = try await CLI.kiln(["validate", dir, "--home", home])
        #expect(result.status == 2)
        #expect(result.stderr.contains("\(dir)/a.yaml:2:7: error: cycle in the image graph: a -> b -> a"))
    }

    @Test("an error found after loading (qemu given a provider image) prints as the loader's do: file:line:col: error:, exit 2")
    func positionedErrorsAfterLoading() async throws {
        let dir = NSTemporaryDirectory() + "kiln-cli-mismatch-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "image: base\nfrom: {provider_image: ami-0123}\n".write(toFile: dir + "/base.yaml", atomically: true, encoding: .utf8)
        let result = try await CLI.kiln(["build", dir, "--home", home])
        #expect(result.status == 2, "\(result.stderr)")
        #expect(
            result.stderr.split(separator: "\n").contains(
                "\(dir)/base.yaml:2:7: error: the qemu provider starts from disks (debootstrap, file, url), not from a provider image"),
            "\(result.stderr)")
    }

    @Test("validate and plan accept the example and show the build order")
    func planExample() async throws {
        let validate = try await CLI.kiln(["validate", CLI.root + "/examples/debian", "--home", home])
        #expect(validate.status == 0)
        #expect(validate.stdout == "ok: 3 templates: debian-12-base -> debian-12-nginx -> shop-web\n")
        let plan = try await CLI.kiln(["plan", CLI.root + "/examples/debian", "--json", "--home", home])
        #expect(plan.status == 0)
        let entries = try #require(try JSONSerialization.jsonObject(with: Data(plan.stdout.utf8)) as? [[String: Any]])
        #expect(entries.map { $0["family"] as? String } == ["debian-12-base", "debian-12-nginx", "shop-web"])
        #expect(entries[1]["parent"] as? String == "debian-12-base")
        #expect((entries[1]["steps"] as? [String])?.count == 3)
    }

    @Test("--only and --except name families of the graph; -j needs a positive count")
    func selectionFlags() async throws {
        let example = CLI.root + "/examples/debian"
        let only = try await CLI.kiln(["build", example, "--only", "shop-web", "nope", "--home", home])
        #expect(only.status == 2)
        #expect(only.stderr.contains("builds 'nope' (families: debian-12-base, debian-12-nginx, shop-web)"))
        let except = try await CLI.kiln(["build", example, "--except", "typo", "--home", home])
        #expect(except.status == 2)
        let jobs = try await CLI.kiln(["build", example, "-j", "0", "--home", home])
        #expect(jobs.status == 2)
        #expect(jobs.stderr.contains("-j must be at least 1"))
        #expect(!FileManager.default.fileExists(atPath: home), "a rejected build wrote to the store")
    }

    @Test("Packer's single-dash words are errors naming kiln's option: -machine-readable no longer prints the help and exits 0")
    func singleDashWords() async throws {
        let example = CLI.root + "/examples/debian"
        let machine = try await CLI.kiln(["build", example, "-machine-readable", "--home", home])
        #expect(machine.status == 2)
        #expect(machine.stderr.contains("-machine-readable: kiln's long options take two dashes (--json)"), "\(machine.stderr)")
        #expect(!machine.stdout.contains("USAGE"), "\(machine.stdout)")
        let only = try await CLI.kiln(["build", example, "-only=shop-web", "--home", home])
        #expect(only.status == 2 && only.stderr.contains("-only=shop-web: kiln's long options take two dashes (--only)"))
        let other = try await CLI.kiln(["plan", example, "-home", home])
        #expect(other.status == 2 && other.stderr.contains("(--home)"), "\(other.stderr)")
        // kiln's own short options still work; after --, a word is an operand.
        let help = try await CLI.kiln(["plan", "-h"])
        #expect(help.status == 0 && help.stdout.contains("USAGE"))
        let jobs = try await CLI.kiln(["build", example, "-j", "0", "--home", home])
        #expect(jobs.status == 2 && jobs.stderr.contains("-j must be at least 1"), "\(jobs.stderr)")
        let attached = try await CLI.kiln(["build", example, "-j0", "--home", home])
        #expect(attached.status == 2 && !attached.stderr.contains("two dashes"), "the parser's own word on -j0: \(attached.stderr)")
        let operand = try await CLI.kiln(["validate", "--", "-missing-dir"])
        #expect(operand.status == 2 && operand.stderr.contains("-missing-dir: no such file or directory"), "\(operand.stderr)")
        #expect(!FileManager.default.fileExists(atPath: home), "a rejected command wrote to the store")
    }

    @Test("a reader that went away (| head) does not kill kiln through SIGPIPE: it finishes and exits as it would")
    func closedStandardOutput() async throws {
        // `true` has exited before kiln starts writing: every write meets a pipe with no reader.
        let script = #"{ sleep 0.3; "$0" validate "$1"; echo "kiln exited $?" >&2; } | true"#
        let result = try await ProcessRunner.run("bash", ["-c", script, KilnBinary.path, CLI.root + "/examples/debian"])
        #expect(result.stderr.contains("kiln exited 0"), "\(result.stderr)")
    }

    @Test("--var for a name no template declares is an error with a suggestion; --var-file reads YAML and JSON, --var wins over it")
    func variableOptions() async throws {
        let example = CLI.root + "/examples/debian"
        let typo = try await CLI.kiln(["plan", example, "--var", "greting=hi", "--home", home])
        #expect(typo.status == 2)
        #expect(
            typo.stderr.contains("--var greting: no template in \(example) declares a variable 'greting' (did you mean 'greeting'?)"),
            "\(typo.stderr)")
        let dir = NSTemporaryDirectory() + "kiln-varfile-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "release: 2.0\ngreeting: hi\n".write(toFile: dir + "/vars.yaml", atomically: true, encoding: .utf8)
        try #"{"release": "3.0"}"#.write(toFile: dir + "/vars.json", atomically: true, encoding: .utf8)
        let files = try await CLI.kiln([
            "ci", "gitlab", example, "--var-file", dir + "/vars.yaml", "--var-file", dir + "/vars.json", "--home", home,
        ])
        #expect(files.status == 0, "\(files.stderr)")
        #expect(files.stdout.contains("greeting=hi") && files.stdout.contains("release=3.0"), "\(files.stdout)")
        let wins = try await CLI.kiln(["ci", "gitlab", example, "--var-file", dir + "/vars.yaml", "--var", "release=4.0", "--home", home])
        #expect(wins.stdout.contains("release=4.0") && !wins.stdout.contains("release=2.0"), "\(wins.stdout)")
        try "release: [1, 2]\n".write(toFile: dir + "/bad.yaml", atomically: true, encoding: .utf8)
        let bad = try await CLI.kiln(["plan", example, "--var-file", dir + "/bad.yaml", "--home", home])
        #expect(bad.status == 2)
        #expect(
            bad.stderr.contains("\(dir)/bad.yaml:1:10: error: variable 'release': its value must be a string, number or boolean"),
            "\(bad.stderr)")
        try "greting: hi\n".write(toFile: dir + "/typo.yaml", atomically: true, encoding: .utf8)
        let fileTypo = try await CLI.kiln(["plan", example, "--var-file", dir + "/typo.yaml", "--home", home])
        #expect(fileTypo.status == 2 && fileTypo.stderr.contains("--var-file \(dir)/typo.yaml: no template in"), "\(fileTypo.stderr)")
        let missing = try await CLI.kiln(["plan", example, "--var-file", dir + "/none.yaml", "--home", home])
        #expect(missing.status == 2 && missing.stderr.contains("--var-file \(dir)/none.yaml: no such file"))
        #expect(!FileManager.default.fileExists(atPath: home), "a rejected command wrote to the store")
    }

    @Test("--debug without a terminal and an unknown --on-breakpoint are invalid input; nothing is written")
    func debugNeedsATerminal() async throws {
        let example = CLI.root + "/examples/debian"
        let debug = try await CLI.kiln(["build", example, "--debug", "--home", home])
        #expect(debug.status == 2)
        #expect(debug.stderr.contains("--debug waits for Enter before every step: it needs a terminal"), "\(debug.stderr)")
        let mode = try await CLI.kiln(["build", example, "--on-breakpoint", "later", "--home", home])
        #expect(mode.status == 2)
        #expect(mode.stderr.contains("--on-breakpoint must be pause, skip or fail, got 'later'"))
        #expect(!FileManager.default.fileExists(atPath: home), "a rejected build wrote to the store")
    }

    @Test("--var overrides a default, and a bad --var is invalid input")
    func variables() async throws {
        // A path shows the value itself (in script text it would be ${KILN_VAR_release}).
        let dir = home + "-templates"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = Data(repeating: 7, count: 1 << 20)
        try disk.write(to: URL(fileURLWithPath: dir + "/base.raw"))
        try """
        image: t
        from: {file: {path: base.raw, sha256: \(Hashing.sha256Hex(disk))}}
        vars: {release: "1.0"}
        provision:
          - file: {src: base.raw, dest: "/opt/release-${var.release}"}
        """.write(toFile: dir + "/t.yaml", atomically: true, encoding: .utf8)
        let plan = try await CLI.kiln(["plan", dir, "--var", "release=2.0", "--home", home])
        #expect(plan.stdout.contains("base.raw -> /opt/release-2.0"), "\(plan.stdout)")
        let bad = try await CLI.kiln(["plan", CLI.root + "/examples/debian", "--var", "release", "--home", home])
        #expect(bad.status == 2)
        #expect(bad.stderr.contains("--var release: expected NAME=VALUE"))
    }

    @Test("an unknown image is invalid input with a hint; --help teaches the commands")
    func unknownImageAndHelp() async throws {
        defer { try? FileManager.default.removeItem(atPath: home) }
        let inspect = try await CLI.kiln(["inspect", "nope", "--home", home])
        #expect(inspect.status == 2)
        #expect(inspect.stderr.contains("no image or family named 'nope' (see kiln images)"))
        let images = try await CLI.kiln(["images", "--json", "--home", home])
        #expect(images.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == "[\n\n]" || images.stdout.contains("[]"))
        let help = try await CLI.kiln(["--help"])
        #expect(help.status == 0)
        for command in ["validate", "plan", "build", "images", "inspect", "logs"] { #expect(help.stdout.contains(command)) }
        let buildHelp = try await CLI.kiln(["build", "--help"])
        #expect(buildHelp.stdout.contains("--on-error"))
    }
}
