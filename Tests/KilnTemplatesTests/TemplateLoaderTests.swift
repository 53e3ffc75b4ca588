import Foundation
import KilnCore
import KilnModel
import Testing
import Yams

@testable import KilnTemplates

@Suite("Template loading")
struct TemplateLoaderTests {
    let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().path

    func diagnostics(_ files: [String: String], overrides: [String: String] = [:], env: [String: String] = [:]) throws
        -> [Diagnostic]
    {
        let dir = try TemplateDirectory(files)
        do {
            _ = try TemplateLoader(overrides: overrides, environment: env).load(path: dir.path)
            return []
        } catch let failure as ValidationFailure {
            return failure.diagnostics.map {
                Diagnostic(file: ($0.file as NSString).lastPathComponent, line: $0.line, column: $0.column, message: $0.message)
            }
        }
    }

    @Test("a file step's src that is (or links to) a device or a host file outside the template is an error at its position")
    func deviceSource() throws {
        let dir = try TemplateDirectory([
            "a.yaml": """
            image: a
            from: {image: b}
            provision:
              - file: {src: zero, dest: /opt/zero}
              - file: {src: shadow, dest: /opt/shadow}
            """
        ])
        // Links inside the template's directory: to a device, and to a host file outside it.
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/zero", withDestinationPath: "/dev/zero")
        try FileManager.default.createSymbolicLink(atPath: dir.path + "/shadow", withDestinationPath: "/etc/hostname")
        #expect {
            _ = try TemplateLoader(environment: [:]).load(path: dir.path)
        } throws: { error in
            let text = "\(error)"
            return text.contains("a.yaml:4:17: error: file src zero")
                && text.contains("a.yaml:5:17: error: file src shadow (a link to /etc/hostname)")
        }
    }

    @Test("what a step reads from the host stays beneath the template's directory: ../ and absolute paths are errors")
    func pathsStayInside() throws {
        let found = try diagnostics([
            "a.yaml": """
            image: a
            from: {image: b}
            provision:
              - file: {src: ../../../../etc/hostname, dest: /etc/x}
              - file: {src: /etc/hostname, dest: /etc/y}
              - file: {src: /etc/hostname, dest: ../../out.txt, direction: download}
              - shell: {script: /etc/hostname}
            """
        ])
        // A download may write anywhere on the host (shell-local could anyway); what is read is limited.
        #expect(found.count == 3, "\(found)")
        #expect(found.allSatisfy { $0.message.contains("is outside the template's directory") }, "\(found)")
        #expect(found.map(\.line) == [4, 5, 7])
    }

    @Test("the three-layer example loads with variables, paths and steps resolved")
    func exampleLoads() throws {
        let set = try TemplateLoader(environment: [:]).load(path: repositoryRoot + "/examples/debian")
        #expect(set.templates.map(\.family) == ["debian-12-nginx", "debian-12-base", "shop-web"])
        let app = try #require(set.template(family: "debian-12-nginx"))
        #expect(app.parentFamily == "debian-12-base")
        guard case .shell(nil, let script?, let env) = app.steps[1].kind else {
            Issue.record("step 1 should be a script step")
            return
        }
        #expect(script == repositoryRoot + "/examples/debian/scripts/setup.sh")
        #expect(env == [EnvVar(name: "GREETING", value: "hello")])
        let product = try #require(set.template(family: "shop-web"))
        guard case .file(let src, "/var/www/html/", true) = product.steps[0].kind else {
            Issue.record("product step 0 should upload the site directory's contents")
            return
        }
        #expect(src.hasSuffix("examples/debian/site/"))
        #expect(product.labels["release"] == "1.0")
        let base = try #require(set.template(family: "debian-12-base"))
        var spec = Debootstrap(suite: "bookworm", variant: "minbase", include: ["ca-certificates", "less"])
        spec.updates = [AptSuite(suite: "bookworm-updates"), AptSuite(suite: "bookworm-security")]
        #expect(base.source == .debootstrap(spec))
        #expect(base.qemu == QemuSettings(memoryMiB: 1024, cpus: 2, diskSize: 4 << 30))
    }

    @Test("every error is reported at once, each with its line and column")
    func allErrorsAtOnce() throws {
        let found = try diagnostics([
            "a.yaml": """
            image: Bad_Name
            colour: blue
            from:
              image: base
            provision:
              - shell: echo ${var.nope}
              - file: {src: missing.txt, dest: /etc/x}
              - copy: {}
            """
        ])
        #expect(found.count == 5)
        let text = found.map(\.description)
        #expect(text[0] == "a.yaml:1:8: error: invalid family name 'Bad_Name': must match [a-z0-9][a-z0-9-]{0,62}")
        #expect(
            text[1]
                == "a.yaml:2:1: error: unknown key 'colour' in a template: expected image, description, from, provider, vars, provision, test, labels, lifecycle, allow_secrets"
        )
        #expect(text[2] == "a.yaml:6:12: error: undefined variable 'nope'")
        #expect(text[3].hasPrefix("a.yaml:7:17: error: file src missing.txt does not exist"))
        #expect(
            text[4]
                == "a.yaml:8:5: error: unknown key 'copy' in provision[2]: expected a step kind (shell, file, shell-local, ansible, breakpoint) or an option (name, timeout, retries, retry_delay, pause_before, when, unless, sensitive_output)"
        )
    }

    @Test("examples/ansible loads: a retried Python install, then the playbook with its typed extra_vars")
    func ansibleExampleLoads() throws {
        let set = try TemplateLoader(environment: [:]).load(path: repositoryRoot + "/examples/ansible")
        let greeter = try #require(set.template(family: "debian-12-greeter"))
        #expect(
            greeter.steps.map(\.title) == [
                "provision[0] install python for ansible", "provision[1] configure the greeter", "provision[2] drop the package lists",
            ])
        #expect(greeter.steps[0].options.retries == 2 && greeter.steps[0].options.timeout == .seconds(1200))
        #expect(
            greeter.steps[1].kind
                == .ansible(
                    AnsiblePlaybook(
                        playbook: repositoryRoot + "/examples/ansible/playbook/site.yml",
                        extraVars: #"{"greeting":"hello from ansible","listen_port":8080}"#)))
    }

    @Test("every step kind and option loads: ansible with typed extra_vars, shell-local, breakpoint, conditions, durations")
    func stepKindsAndOptions() throws {
        let dir = try TemplateDirectory([
            "app.yaml": """
            image: app
            from: {image: base}
            vars: {greeting: hi, env: prod}
            provision:
              - name: install python
                shell: apt-get install -y python3
                timeout: 1h30m
                retries: 3
                retry_delay: 500ms
                when: {provider: qemu}
              - ansible:
                  playbook: ansible/site.yml
                  galaxy_file: ansible/requirements.yml
                  extra_vars: {greeting: "${var.greeting}", port: 80, tls: false, ratio: 0.5, quoted: "80", list: [a, 1], none: null}
                unless: {provider: [aws, gcp], var: {env: dev}}
              - shell-local: {inline: [make artifact, ls], env: {OUT: dist}}
                sensitive_output: true
                pause_before: 90
              - breakpoint: {note: "inspect ${var.greeting}"}
              - breakpoint:
            """,
            "ansible/site.yml": "- hosts: all\n",
            "ansible/requirements.yml": "roles: []\n",
        ])
        let app = try #require(try TemplateLoader(environment: [:]).load(path: dir.file("app.yaml")).template(family: "app"))
        #expect(app.steps.count == 5)
        #expect(app.steps[0].title == "provision[0] install python")
        #expect(app.steps[0].options.timeout == .seconds(5400))
        #expect(app.steps[0].options.retries == 3 && app.steps[0].options.retryDelay == .milliseconds(500))
        #expect(app.steps[0].options.when == StepCondition(providers: ["qemu"]))
        guard case .ansible(let ansible) = app.steps[1].kind else {
            Issue.record("step 1 should be ansible")
            return
        }
        #expect(ansible.playbook == dir.file("ansible/site.yml") && ansible.directory == dir.file("ansible"))
        #expect(ansible.galaxyFile == dir.file("ansible/requirements.yml"))
        #expect(
            ansible.extraVars
                == #"{"greeting":"hi","list":["a",1],"none":null,"port":80,"quoted":"80","ratio":0.5,"tls":false}"#)
        #expect(app.steps[1].title == "provision[1] ansible site.yml")
        #expect(app.steps[1].options.unless == StepCondition(providers: ["aws", "gcp"], variables: ["env": "dev"]))
        #expect(app.skipReason(of: app.steps[1], provider: "qemu") == nil)
        #expect(app.skipReason(of: app.steps[0], provider: "aws") != nil)
        #expect(app.steps[2].kind == .shellLocal(inline: "make artifact\nls", script: nil, env: [EnvVar(name: "OUT", value: "dist")]))
        #expect(app.steps[2].options.sensitiveOutput && app.steps[2].options.pauseBefore == .seconds(90))
        #expect(app.steps[2].title == "provision[2] shell-local make artifact")
        #expect(app.steps[3].kind == .breakpoint(note: "inspect hi"))
        #expect(app.steps[4].kind == .breakpoint(note: nil))
    }

    @Test("wrong step options are reported at their place")
    func stepOptionErrors() throws {
        let found = try diagnostics([
            "a.yaml": """
            image: a
            from: {image: base}
            provision:
              - shell: x
                timeout: 5 minutes
                retries: -1
                when: {provider: [], var: {nope: 1}}
              - ansible: {playbook: missing.yml, extra_vars: [1]}
              - breakpoint: stop
                retries: 2
              - shell: y
                sensitive_output: maybe
                unless: {}
              - name: two kinds
                shell: a
                shell-local: b
              - name: no kind
            """
        ])
        // The playbook's message ends with the temporary directory's absolute path.
        let missing = "a.yaml:8:25: error: playbook missing.yml does not exist (looked at "
        let text = found.map(\.description).map { $0.hasPrefix(missing) ? missing : $0 }
        #expect(
            text == [
                "a.yaml:5:14: error: timeout must be a duration like 30s, 10m, 1h30m or 500ms, got '5 minutes'",
                "a.yaml:6:14: error: retries must be between 0 and 100",
                "a.yaml:7:22: error: when.provider: give a provider name (e.g. qemu)",
                "a.yaml:7:32: error: when.var: undefined variable 'nope'",
                missing,
                "a.yaml:8:50: error: extra_vars must be a mapping, got a list",
                "a.yaml:10:5: error: a breakpoint takes no retries (only name, pause_before, when, unless)",
                "a.yaml:12:23: error: sensitive_output must be true or false",
                "a.yaml:13:13: error: unless needs provider or var",
                "a.yaml:16:5: error: provision[4] has both shell and shell-local; use one step for each",
                "a.yaml:17:5: error: provision[5] needs one of shell, file, shell-local, ansible, breakpoint",
            ], "\(text)")
    }

    @Test("missing required keys, wrong types and bad sizes name their place")
    func requiredAndTypes() throws {
        let found = try diagnostics([
            "a.yaml": """
            description: [not, a, string]
            provider:
              qemu: {memory: lots, disk_size: 10X, cpus: 0}
            provision: not-a-list
            """
        ])
        let text = found.map(\.description)
        #expect(text.contains("a.yaml:1:14: error: description must be a string, got a list"))
        #expect(text.contains { $0.hasPrefix("a.yaml:3:18: error: memory must be a size like 512M or 4G") })
        #expect(text.contains { $0.hasPrefix("a.yaml:3:35: error: disk_size must be a size") })
        #expect(text.contains("a.yaml:3:46: error: cpus must be between 1 and 64"))
        #expect(text.contains("a.yaml:4:12: error: provision must be a list, got 'not-a-list'"))
        #expect(text.contains("a.yaml:1:1: error: missing required key 'image' (the family this template builds)"))

        // A disk too small for the boot partitions and a minimal Debian is refused before any bootstrap.
        let small = try diagnostics(["b.yaml": "image: b\nfrom: {debootstrap: {suite: bookworm}}\nprovider: {qemu: {disk_size: 1000M}}\n"])
        #expect(small.map(\.description).contains { $0.hasPrefix("b.yaml:3:30: error: disk_size must be at least 1G") }, "\(small)")
        #expect(
            try diagnostics(["c.yaml": "image: c\nfrom: {debootstrap: {suite: bookworm}}\nprovider: {qemu: {disk_size: 1G}}\n"]).isEmpty)
    }

    @Test("invalid YAML and duplicate keys point at the offending line")
    func yamlErrors() throws {
        let broken = try diagnostics(["a.yaml": "image: a\nfrom: {image: b\nprovision: []\n"])
        #expect(broken.count == 1)
        #expect(broken[0].description.hasPrefix("a.yaml:3:"))
        #expect(broken[0].message.hasPrefix("invalid YAML"))
        let duplicate = try diagnostics(["a.yaml": "image: a\nfrom: {image: b}\nimage: c\n"])
        #expect(duplicate.map(\.description) == ["a.yaml:1:1: error: duplicate key 'image'"])
        let tabs = try diagnostics(["a.yaml": "image: a\nfrom:\n\timage: b\n"])
        #expect(tabs.count == 1 && tabs[0].line == 3)
    }

    @Test("from needs exactly one source, and each source its own keys")
    func sources() throws {
        let found = try diagnostics([
            "a.yaml": "image: a\nfrom: {image: b, debootstrap: {suite: bookworm}}\n",
            "b.yaml": "image: b\nfrom: {debootstrap: {variant: tiny}}\n",
            "c.yaml": "image: c\nfrom: {file: {path: nowhere.qcow2, sha256: abc}}\n",
            "d.yaml": "image: d\nfrom: {}\n",
        ])
        let text = found.map(\.description)
        #expect(text.contains { $0.hasPrefix("a.yaml:2:18: error: from: has both") })
        #expect(text.contains("b.yaml:2:21: error: from.debootstrap: missing required key 'suite' (e.g. bookworm)"))
        #expect(text.contains { $0.hasPrefix("c.yaml:2:21: error: from.file: nowhere.qcow2 does not exist") })
        #expect(text.contains("c.yaml:2:44: error: sha256 must be 64 hexadecimal digits"))
        #expect(text.contains("d.yaml:2:7: error: from: needs exactly one of debootstrap, file, url, image, provider_image"))
    }

    @Test("debootstrap updates: a suite name or a mapping; fields left out are the base's; bad values name their place")
    func debootstrapUpdates() throws {
        let dir = try TemplateDirectory([
            "base.yaml": """
            image: base
            from:
              debootstrap:
                suite: bookworm
                components: [main, non-free-firmware]
                updates:
                  - bookworm-security
                  - {suite: tools, mirror: "http://127.0.0.1:8080/tools", trusted: true, components: [main]}
            """
        ])
        let template = try #require(try TemplateLoader(environment: [:]).load(path: dir.path).template(family: "base"))
        guard case .debootstrap(let spec) = template.source else {
            Issue.record("expected a debootstrap source")
            return
        }
        #expect(spec.components == ["main", "non-free-firmware"])
        #expect(spec.updates.map(\.suite) == ["bookworm-security", "tools"])
        #expect(spec.updates[0].mirror == nil && spec.updates[0].trusted == nil)
        #expect(spec.updates[1].mirror == "http://127.0.0.1:8080/tools" && spec.updates[1].trusted == true)
        #expect(spec.updates[1].components == ["main"])

        let found = try diagnostics([
            "a.yaml": "image: a\nfrom: {debootstrap: {suite: bookworm, updates: [\"bad suite\"]}}\n",
            "b.yaml": "image: b\nfrom: {debootstrap: {suite: bookworm, updates: [{mirror: ftp://x}]}}\n",
            "c.yaml": "image: c\nfrom: {debootstrap: {suite: bookworm, signed_by: missing.gpg, trusted: maybe}}\n",
            "d.yaml": "image: d\nfrom: {debootstrap: {suite: bookworm, components: []}}\n",
        ]).map(\.description)
        #expect(found.contains { $0.hasPrefix("a.yaml:2:49: error: invalid suite 'bad suite'") })
        #expect(found.contains("b.yaml:2:49: error: from.debootstrap.updates item: missing required key 'suite'"))
        #expect(found.contains("b.yaml:2:58: error: mirror must be an http, https or file URL, got 'ftp://x'"))
        #expect(found.contains { $0.hasPrefix("c.yaml:2:50: error: signed_by: missing.gpg does not exist") })
        #expect(found.contains("c.yaml:2:72: error: trusted must be true or false"))
        #expect(found.contains("d.yaml:2:51: error: components: give at least one (e.g. [main])"))
    }

    @Test("variable values: default, then KILN_VAR_NAME, then --var; $${ is a literal")
    func variablePrecedence() throws {
        let dir = try TemplateDirectory([
            "a.yaml": """
            image: a
            from: {image: b}
            vars:
              v: {default: from-default}
              w: plain
              token: {sensitive: true}
            provision:
              - shell: echo ${var.v} ${var.w} $${var.v} ${var.token}
            """
        ])
        let env = ["KILN_VAR_v": "from-env", "KILN_VAR_token": "s3cret"]
        let fromEnv = try TemplateLoader(environment: env).load(path: dir.path)
        // In script text a variable is a reference to the environment the step gets (docs/templates.md).
        let script = "echo ${KILN_VAR_v} ${KILN_VAR_w} ${var.v} ${KILN_VAR_token}"
        func values(_ v: String) -> [EnvVar] {
            [
                EnvVar(name: "KILN_VAR_v", value: v), EnvVar(name: "KILN_VAR_w", value: "plain"),
                EnvVar(name: "KILN_VAR_token", value: "s3cret"),
            ]
        }
        #expect(fromEnv.templates[0].steps[0].kind == .shell(inline: script, script: nil, env: values("from-env")))
        #expect(fromEnv.sensitiveValues == ["s3cret"])
        let fromFlag = try TemplateLoader(overrides: ["v": "from-flag"], environment: env).load(path: dir.path)
        #expect(fromFlag.templates[0].steps[0].kind == .shell(inline: script, script: nil, env: values("from-flag")))
    }

    @Test("a variable without a value is an error at its declaration")
    func missingValue() throws {
        let found = try diagnostics([
            "a.yaml": "image: a\nfrom: {image: b}\nvars:\n  token: {sensitive: true}\nprovision:\n  - shell: echo ${var.token}\n"
        ])
        #expect(
            found.map(\.description) == [
                "a.yaml:4:3: error: variable 'token' has no value: give it a default, set KILN_VAR_token or pass --var token=VALUE"
            ])
    }

    @Test("two templates for one family are both named")
    func duplicateFamilies() throws {
        let found = try diagnostics([
            "a.yaml": "image: same\nfrom: {image: b}\n",
            "b.yaml": "# second\nimage: same\nfrom: {image: b}\n",
        ])
        #expect(found.count == 1)
        #expect(found[0].description.hasPrefix("b.yaml:2:8: error: family 'same' is also defined at "))
        #expect(found[0].description.hasSuffix("a.yaml:1:8"))
    }

    @Test("hostile names never pass the name pattern")
    func hostileNames() {
        for name in ["../etc", "a/b", "a b", "$(reboot)", "a\nb", "", "A", "-a", String(repeating: "a", count: 64), "a'b"] {
            #expect(!Names.isValidFamily(name), "\(name) must be rejected")
        }
        for name in ["a", "debian-12-base", "0abc", String(repeating: "a", count: 63)] {
            #expect(Names.isValidFamily(name))
        }
    }

    @Test("shell quoting survives every character")
    func quoting() {
        #expect(ShellQuote.quote("it's $(x) `y`") == #"'it'\''s $(x) `y`'"#)
        #expect(ShellQuote.join(["env", "A=b c"]) == "'env' 'A=b c'")
    }
}

extension TemplateLoaderTests {
    @Test("provider: takes a name or one name with settings; aws's keys are checked, a plugin's pass through as JSON with their YAML types")
    func providerForms() throws {
        let dir = try TemplateDirectory([
            "a.yaml": "image: a\nfrom: {provider_image: busybox}\nprovider: chroot\n",
            "b.yaml": """
            image: b
            from: {provider_image: ami-0abc1234}
            provider:
              aws: {region: eu-west-1, instance_type: t3.small, security_group_ids: [sg-1, sg-2]}
            """,
            "c.yaml": "image: c\nfrom: {image: a}\nprovider: {chroot: {busybox: /opt/busybox, depth: 3, fast: true}}\n",
            "d.yaml": "image: d\nfrom: {image: c}\n",
            "e.yaml": "image: e\nfrom: {image: d}\nprovider: {qemu: {memory: 2G}}\n",
        ])
        let set = try TemplateLoader(environment: [:]).load(path: dir.path)
        let a = try #require(set.template(family: "a"))
        #expect(a.provider.name == "chroot" && a.provider.settings.json == "{}")
        #expect(a.source == .providerImage(id: "busybox"))
        let b = try #require(set.template(family: "b"))
        #expect(b.provider.name == "aws")
        #expect(b.provider.settings.json == #"{"instance_type":"t3.small","region":"eu-west-1","security_group_ids":["sg-1","sg-2"]}"#)
        #expect(try #require(set.template(family: "c")).provider.settings.json == #"{"busybox":"/opt/busybox","depth":3,"fast":true}"#)
        #expect(try #require(set.template(family: "d")).provider == ProviderChoice())
        let e = try #require(set.template(family: "e"))
        #expect(e.provider.name == "qemu" && e.qemu.memoryMiB == 2048)
    }

    @Test("provider: and from.provider_image errors point at the offending key or value")
    func providerErrors() throws {
        let found = try diagnostics([
            "a.yaml": "image: a\nfrom: {provider_image: x}\nprovider: {aws: {colour: red}}\n",
            "b.yaml": "image: b\nfrom: {provider_image: x}\nprovider: {qemu: {}, aws: {}}\n",
            "c.yaml": "image: c\nfrom: {provider_image: x}\nprovider: Bad_Name\n",
            "d.yaml": "image: d\nfrom: {provider_image: x}\nprovider: {myplug: 3}\n",
            "e.yaml": "image: e\nfrom: {provider_image: \"\"}\nprovider: aws\n",
            "f.yaml": "image: f\nfrom: {image: e}\nprovision:\n  - file: {src: /etc/x, dest: out/x, direction: sideways}\n",
            "g.yaml": "image: g\nfrom: {image: e}\nprovision:\n  - file: {src: etc/x, dest: out/x, direction: download}\n",
        ]).map(\.description)
        #expect(
            found.contains(
                "a.yaml:3:18: error: unknown key 'colour' in provider.aws: expected region, instance_type, subnet_id, security_group_ids, ssh_user"
            ), "\(found)")
        #expect(found.contains { $0.hasPrefix("b.yaml:3:11: error: provider: name exactly one provider") }, "\(found)")
        #expect(found.contains { $0.hasPrefix("c.yaml:3:11: error: provider: 'Bad_Name' is not a provider name") }, "\(found)")
        #expect(found.contains("d.yaml:3:20: error: provider.myplug must be a mapping of the plugin's settings, got '3'"), "\(found)")
        #expect(found.contains { $0.hasPrefix("e.yaml:2:24: error: from.provider_image: give the provider's image id") }, "\(found)")
        #expect(found.contains("f.yaml:4:49: error: file direction must be upload or download, got 'sideways'"), "\(found)")
        #expect(
            found.contains("g.yaml:4:17: error: file src must be an absolute path in the guest when downloading, got 'etc/x'"), "\(found)")
    }

}

@Suite("Redaction of sensitive values")
struct RedactionTests {
    @Test("a sensitive value that contains another is redacted whole, whatever order they were declared in")
    func longestFirst() throws {
        let dir = try TemplateDirectory([
            "a.yaml": """
            image: app
            from: {image: base}
            vars:
              short: {default: abc, sensitive: true}
              long: {default: abcdef, sensitive: true}
            provision:
              - file: {src: a.yaml, dest: "/opt/${var.long} ${var.short}"}
            """
        ])
        let set = try TemplateLoader(environment: [:]).load(path: dir.path)
        let title = try #require(set.templates.first?.steps.first?.title)
        #expect(set.redact(title).hasSuffix("/opt/<sensitive> <sensitive>"), "\(set.redact(title))")
        #expect(set.redact("token=abcdefabc;") == "token=<sensitive><sensitive>;")
        // The build log's redaction is the same rule.
        let logPath = dir.path + "/build.log"
        let log = try BuildLog(path: logPath, family: "app", secrets: ["abc", "abcdef"], sink: nil)
        #expect(log.redact("key abcdef") == "key <sensitive>")
        #expect(Redactor(["", "abc", "abc", "abcdef"]).values == ["abcdef", "abc"])
    }

    @Test("a multi-line secret (a PEM key) is redacted line by line as output arrives, and in its JSON-escaped form")
    func multiLine() throws {
        let body = ["b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW", "QyNTUxOQAAACDhK3c2tLkQ9x8RzL1rQ"]
        let pem = (["-----BEGIN OPENSSH PRIVATE KEY-----"] + body + ["-----END OPENSSH PRIVATE KEY-----", "}"]).joined(separator: "\n")
        let dir = NSTemporaryDirectory() + "kiln-redact-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let shown = Locked<[String]>([])
        let log = try BuildLog(
            path: dir + "/build.log", family: "app", secrets: [pem], sink: { _, line in shown.withLock { $0.append(line) } })
        // A step that prints the key: its output arrives a line at a time.
        for line in pem.split(separator: "\n") { log.emit("step", String(line)) }
        // A JSON document holding it, as a step or an event would print it.
        let json = String(decoding: try JSONEncoder().encode(["key": pem]), as: UTF8.self)
        log.emit("step", json)
        log.close()
        let archived = try String(contentsOfFile: dir + "/build.log", encoding: .utf8)
        for text in shown.value + [archived] {
            for secretLine in body { #expect(!text.contains(secretLine), "\(text)") }
        }
        #expect(shown.value.last?.contains("<sensitive>") == true)
        // Short lines of a secret are not redacted on their own: a lone } stays readable.
        #expect(log.redact("{ } done") == "{ } done")
    }
}

@Suite("Booleans: one rule for keys and values")
struct BooleanRuleTests {
    @Test("yes, on and quoted true are not booleans for a key, as they are not in extra_vars: YAML 1.2's rule everywhere")
    func yamlOneTwoEverywhere() throws {
        let dir = try TemplateDirectory([
            "a.yaml": """
            image: a
            from: {image: base}
            vars:
              token: {default: x, sensitive: yes}
              other: {default: y, sensitive: "true"}
              third: {default: z, sensitive: TRUE}
            provision:
              - shell: x
                sensitive_output: on
            """
        ])
        do {
            _ = try TemplateLoader(environment: [:]).load(path: dir.path)
            Issue.record("yes, on and \"true\" were taken as booleans")
        } catch let failure as ValidationFailure {
            #expect(
                failure.diagnostics.map { "\($0.line):\($0.column): \($0.message)" } == [
                    "4:34: sensitive must be true or false (YAML 1.2 reads yes as a string)",
                    "5:34: sensitive must be true or false (unquoted)",
                    "9:23: sensitive_output must be true or false (YAML 1.2 reads on as a string)",
                ])
        }
        // The same scalars as values: strings, and TRUE a boolean, by the same function.
        let yes = try #require(try Yams.compose(yaml: "yes"))
        let quoted = try #require(try Yams.compose(yaml: "\"true\""))
        let upper = try #require(try Yams.compose(yaml: "TRUE"))
        #expect(TemplateParser.boolean(try #require(yes.scalar)) == nil)
        #expect(TemplateParser.boolean(try #require(quoted.scalar)) == nil)
        #expect(TemplateParser.boolean(try #require(upper.scalar)) == true)
    }
}
