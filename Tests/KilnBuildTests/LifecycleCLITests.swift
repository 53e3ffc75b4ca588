import Foundation
import KilnCore
import KilnModel
import KilnStore
import KilnTestSupport
import Testing

@Suite("Lifecycle commands (no VM)")
struct LifecycleCLITests {
    /// A store at `home` whose catalog holds one READY image of family `web`.
    static func storeWithOneImage(_ home: String) throws -> (Store, String) {
        let store = try Store(root: home)
        _ = try store.catalog.commit(
            ImageDraft(
                family: "web", digest: "d1", parent: nil, labels: [:], description: nil, templateHash: "t", size: 1,
                log: "logs/x.tar.zst", buildID: "b1", sourceKind: "file"))
        return (store, try #require(try store.catalog.images().first?.name))
    }

    @Test("resolve, deprecate, rollback, undeprecate and delete through the kiln binary")
    func commands() async throws {
        let home = NSTemporaryDirectory() + "kiln-lifecycle-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try Store(root: home)
        for index in 1...2 {
            _ = try store.catalog.commit(
                ImageDraft(
                    family: "web", digest: "d\(index)", parent: nil, labels: [:], description: nil, templateHash: "t", size: 1,
                    log: "logs/x.tar.zst", buildID: "b\(index)", sourceKind: "file"),
                at: Date(timeIntervalSinceNow: Double(index)))
        }
        let names = try store.catalog.images().map(\.name)
        let (old, new) = (names[0], names[1])
        func kiln(_ arguments: String...) async throws -> ProcessResult { try await CLI.kiln(arguments + ["--home", home]) }

        #expect(try await kiln("resolve", "web").stdout == "\(new)\n")
        let dry = try await kiln("deprecate", old, "--replacement", new, "--dry-run")
        #expect(dry.stdout == "would change \(old): READY -> DEPRECATED\n")
        #expect(try await kiln("deprecate", old, "--replacement", new, "--reason", "superseded").status == 0)
        let warned = try await kiln("resolve", old)
        #expect(warned.status == 0 && warned.stdout == "\(old)\n")
        #expect(warned.stderr.contains("\(old) is DEPRECATED; use \(new) instead"))
        let refused = try await kiln("delete", new)
        #expect(refused.status == 2 && refused.stderr.contains("is the head of web"))
        let inspected = try await kiln("inspect", old, "--json")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(inspected.stdout.utf8)) as? [String: Any])
        #expect(json["state"] as? String == "DEPRECATED" && json["replacement"] as? String == new && json["purged"] as? Bool == false)
        #expect(try await kiln("undeprecate", old).status == 0)
        let dryRollback = try await kiln("rollback", "web", "--dry-run")
        #expect(dryRollback.stdout == "would deprecate \(new); the family would resolve to \(old)\n", "\(dryRollback.stderr)")
        #expect(try await kiln("resolve", "web").stdout == "\(new)\n")
        let rollback = try await kiln("rollback", "web", "--reason", "bad kernel")
        #expect(rollback.stdout == "web: \(new) is DEPRECATED; the family resolves to \(old)\n")
        #expect(try await kiln("resolve", "web").stdout == "\(old)\n")
        #expect(try await kiln("delete", new).status == 0)
        let gone = try await kiln("resolve", new)
        #expect(gone.status == 2 && gone.stderr.contains("\(new) is DELETED"))
        #expect(try await kiln("promote", old, "--channel", "prod", "--dry-run").stdout == "would move web@prod -> \(old)\n")
        #expect(try await kiln("resolve", "web@prod").status == 2)
        #expect(try await kiln("promote", old, "--channel", "prod").stdout == "web@prod -> \(old)\n")
        #expect(try await kiln("resolve", "web@prod").stdout == "\(old)\n")
        #expect(try await kiln("resolve", "web@staging").status == 2)
        let show = try await kiln("family", "show", "web")
        #expect(show.stdout.contains("family web: head \(old)"))
        #expect(show.stdout.contains("channel prod -> \(old)"))
        #expect(show.stdout.contains("\(new) READY -> DEPRECATED by "))
        let list = try await kiln("family")
        #expect(list.stdout.contains("web     \(old)"))
        let events = try store.catalog.history(family: "web").map { "\($0.fromState.rawValue)->\($0.toState.rawValue) \($0.reason)" }
        #expect(
            events == [
                "READY->DEPRECATED superseded", "DEPRECATED->READY undeprecated", "READY->DEPRECATED rollback to \(old): bad kernel",
                "DEPRECATED->DELETED deleted",
            ])
    }

    @Test("deprecate takes dates relative to now (--obsolete-in 30d) and refuses past dates and a delete date before the obsolete one")
    func deprecateDates() async throws {
        let home = NSTemporaryDirectory() + "kiln-lifecycle-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let (store, name) = try Self.storeWithOneImage(home)
        func kiln(_ arguments: String...) async throws -> ProcessResult { try await CLI.kiln(arguments + ["--home", home]) }
        let past = try await kiln("deprecate", name, "--obsolete-on", "2020-01-01")
        #expect(past.status == 2 && past.stderr.contains("the obsolete date 2020-01-01T00:00:00Z is not in the future"), "\(past.stderr)")
        let order = try await kiln("deprecate", name, "--obsolete-in", "30d", "--delete-in", "2w")
        #expect(order.status == 2 && order.stderr.contains("comes before the obsolete date"), "\(order.stderr)")
        let both = try await kiln("deprecate", name, "--obsolete-in", "30d", "--obsolete-on", "2099-01-01")
        #expect(both.status == 2 && both.stderr.contains("give --obsolete-on or --obsolete-in, not both"))
        let unit = try await kiln("deprecate", name, "--obsolete-in", "30")
        #expect(unit.status == 2 && unit.stderr.contains("expected a count and a unit, like 12h, 30d or 2w"))
        #expect(try store.catalog.image(named: name)?.state == .ready, "a refused deprecate changed nothing")
        let before = Date()
        #expect(try await kiln("deprecate", name, "--obsolete-in", "30d", "--delete-in", "60d").status == 0)
        let image = try #require(try store.catalog.image(named: name))
        let obsolete = try #require(image.obsoleteOn)
        let delete = try #require(image.deleteOn)
        #expect(abs(obsolete.timeIntervalSince(before) - 30 * 86400) < 60)
        #expect(abs(delete.timeIntervalSince(before) - 60 * 86400) < 60)
    }

    @Test(
        "images hides DELETED unless --show-deleted or --all; --filter, --sort-by and --limit as gcloud has them; resolve --flat is an object of strings"
    )
    func imageListing() async throws {
        let home = NSTemporaryDirectory() + "kiln-listing-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let store = try Store(root: home)
        let drafts: [(String, [String: String], Int64)] = [
            ("web", ["team": "web"], 30), ("web", ["team": "web"], 10), ("web", [:], 20), ("db", ["team": "data"], 40),
        ]
        for (index, (family, labels, size)) in drafts.enumerated() {
            _ = try store.catalog.commit(
                ImageDraft(
                    family: family, digest: "d\(index)", parent: nil, labels: labels, description: nil, templateHash: "t", size: size,
                    log: "logs/x.tar.zst", buildID: "b\(index)", sourceKind: "file"),
                at: Date(timeIntervalSinceNow: Double(index)))
        }
        let web = try store.catalog.images().filter { $0.family == "web" }.map(\.name)
        func kiln(_ arguments: String...) async throws -> ProcessResult { try await CLI.kiln(arguments + ["--home", home]) }
        func names(_ arguments: String...) async throws -> [String] {
            let result = try await CLI.kiln(["images", "--json", "--home", home] + arguments)
            #expect(result.status == 0, "\(arguments): \(result.stderr)")
            let list = try #require(try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [[String: Any]])
            return list.compactMap { $0["name"] as? String }
        }
        #expect(try await kiln("deprecate", web[0]).status == 0)
        #expect(try await kiln("delete", web[0]).status == 0)
        #expect(try await names().count == 3)
        #expect(!(try await kiln("images").stdout.contains(web[0])))
        #expect(try await names("--show-deleted").contains(web[0]))
        #expect(try await names("--all").count == 4)
        #expect(try await names("--filter", "labels.team=web", "--all") == [web[0], web[1]])
        #expect(try await names("--filter", "state=ready family=web") == [web[1], web[2]])
        #expect(try await names("--filter", "family=web AND labels.team!=web") == [web[2]])
        #expect(try await names("--filter", "name~^db-", "--filter", "state=READY").count == 1)
        #expect(
            try await names("--sort-by", "~size", "--all") == [
                try #require(store.catalog.images().first { $0.family == "db" }?.name), web[0], web[2], web[1],
            ])
        #expect(
            try await names("--sort-by", "~created", "--limit", "2") == [
                try #require(store.catalog.images().first { $0.family == "db" }?.name), web[2],
            ])
        #expect(try await names("--family", "web", "--sort-by", "size") == [web[1], web[2]])

        let unknown = try await kiln("images", "--filter", "famly=web")
        #expect(unknown.status == 2 && unknown.stderr.contains("unknown field 'famly' (did you mean 'family'?)"), "\(unknown.stderr)")
        let shape = try await kiln("images", "--filter", "web")
        #expect(shape.status == 2 && shape.stderr.contains("'web' is not FIELD=VALUE"), "\(shape.stderr)")
        let regex = try await kiln("images", "--filter", "name~(")
        #expect(regex.status == 2 && regex.stderr.contains("is not a regular expression"), "\(regex.stderr)")
        #expect(try await kiln("images", "--sort-by", "age").status == 2)
        #expect(try await kiln("images", "--limit", "0").status == 2)

        let flat = try await kiln("resolve", "web", "--flat")
        #expect(flat.status == 0, "\(flat.stderr)")
        let object = try #require(try JSONSerialization.jsonObject(with: Data(flat.stdout.utf8)) as? [String: Any])
        #expect(object["name"] as? String == web[2] && object["digest"] as? String == "d2" && object["family"] as? String == "web")
        #expect(object.values.allSatisfy { $0 is String }, "Terraform's external data source takes strings only: \(object)")
        #expect(try await kiln("resolve", "web", "--flat", "--json").status == 2)
    }

    @Test(
        "shell completions (bash, as make install installs them) offer --format and --on-error values, and image names and families from the store --home names"
    )
    func completions() async throws {
        let home = NSTemporaryDirectory() + "kiln-completion-" + UUID().uuidString
        defer { try? FileManager.default.removeItem(atPath: home) }
        let (store, name) = try Self.storeWithOneImage(home)
        let script = try await CLI.kiln(["--generate-completion-script", "bash"])
        #expect(script.status == 0)
        let file = home + "/kiln.bash"
        try script.stdout.write(toFile: file, atomically: true, encoding: .utf8)
        func complete(_ words: [String]) async throws -> [String] {
            // What bash does on TAB: the words so far, the last one being completed.
            let quoted = words.map { "'\($0)'" }.joined(separator: " ")
            let program = """
                source "$1"; COMP_WORDS=(\(quoted)); COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
                COMP_LINE="${COMP_WORDS[*]}"; COMP_POINT=${#COMP_LINE}
                _kiln kiln "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD-1]}"; printf '%s\\n' "${COMPREPLY[@]}"
                """
            let directory = URL(fileURLWithPath: KilnBinary.path).deletingLastPathComponent().path
            let run = try await ProcessRunner.run(
                "bash", ["-c", program, "bash", file], environment: ["PATH": directory + ":/usr/bin:/bin", "KILN_HOME": home + "/none"])
            return run.stdout.split(separator: "\n").map(String.init)
        }
        #expect(try await complete(["kiln", "export", "x", "--format", ""]) == ["qcow2", "raw", "vmdk", "vhd", "gce", "tar.zst", "oci"])
        #expect(try await complete(["kiln", "build", "--on-error", "k"]) == ["keep"])
        #expect(try await complete(["kiln", "inspect", "--home", home, ""]) == ["web", name])
        #expect(try await complete(["kiln", "rollback", "--home", home, "w"]) == ["web"])
        #expect(try await complete(["kiln", "inspect", ""]) == [], "no store at $KILN_HOME: nothing offered")
        #expect(!FileManager.default.fileExists(atPath: home + "/none"), "completion created no store")
    }
}
