import Foundation
import KilnCore
import KilnGraph
import KilnModel
import KilnTemplates
import KilnTestSupport
import Testing

/// Makes hostile and broken templates from the examples: byte and line mutations, tokens YAML
/// gives meaning to, hostile names, and generated bombs, deep nesting, huge scalars and
/// duplicate keys.
struct TemplateMutator {
    var random: SeededGenerator
    let corpus: [[UInt8]]

    static let tokens: [String] = [
        "&a ", "*a", "*b", "<<: *a\n", ": ", "- ", "\t", "{", "}", "[", "]", "\"", "'", "\n", "${var.", "${var.greeting}",
        "$${", "${env.HOME}", "!!binary ", "!!python/object:os.system ", "? ", "|", ">", "%YAML 1.1\n", "---\n", "...\n", "#",
        "\u{0}", "\u{feff}", "é", "\u{202e}", "../", "/etc/passwd", "$(reboot)", "`id`", "'; rm -rf / #", "~", "null", "0x1F",
        ".inf", "-", ":", ",", "!", "%", "@", "`",
    ]
    static let hostileNames: [String] = [
        "../../etc", "a/b", "a b", "Shop", "a\nb", "-a", String(repeating: "a", count: 70), "$(touch x)", "'q'", "\"q\"", "",
        "a..b", "é", "a;b", "`id`", ".", "..", "a\u{0}b", "a\\b",
    ]

    mutating func pick<T>(_ items: [T]) -> T { items[Int.random(in: 0..<items.count, using: &random)] }
    mutating func int(_ range: ClosedRange<Int>) -> Int { Int.random(in: range, using: &random) }

    /// One input and what made it, for the failure message.
    mutating func next() -> (kind: String, bytes: [UInt8]) {
        var bytes = pick(corpus)
        switch int(0...11) {
        case 0:
            for _ in 0..<int(1...8) where !bytes.isEmpty { bytes[int(0...bytes.count - 1)] = UInt8(int(0...255)) }
            return ("random bytes", bytes)
        case 1:
            let token = Array(pick(Self.tokens).utf8)
            for _ in 0..<int(1...4) { bytes.insert(contentsOf: token, at: int(0...bytes.count)) }
            return ("tokens", bytes)
        case 2:
            if !bytes.isEmpty {
                let start = int(0...bytes.count - 1)
                bytes.removeSubrange(start..<min(bytes.count, start + int(1...40)))
            }
            return ("cut", bytes)
        case 3:
            var lines = String(decoding: bytes, as: UTF8.self).split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            for _ in 0..<int(1...3) {
                let i = int(0...lines.count - 1)
                switch int(0...3) {
                case 0: lines.insert(lines[i], at: i)  // duplicate keys, mostly
                case 1: lines.remove(at: i)
                case 2: lines.swapAt(i, int(0...lines.count - 1))
                default: lines[i] = (int(0...1) == 0 ? "  " : "\t") + lines[i]
                }
                if lines.isEmpty { lines = [""] }
            }
            return ("lines", Array(lines.joined(separator: "\n").utf8))
        case 4:
            let name = pick(Self.hostileNames)
            let quoted = "\"" + name.unicodeScalars.map { $0.escaped(asASCII: true) }.joined() + "\""
            let text = String(decoding: bytes, as: UTF8.self)
            let target = pick(["image: ", "  greeting: ", "image: debian", "family: "])
            return (
                "hostile name",
                Array(text.replacingOccurrences(of: target, with: target.hasSuffix(" ") ? target + quoted + " #" : quoted).utf8)
            )
        case 5:
            let hostile = pick(Self.hostileNames).replacingOccurrences(of: "\n", with: "\\n")
            return (
                "hostile variable", Array("image: a\nfrom: {debootstrap: {suite: bookworm}}\nvars:\n  \"\(hostile)\": {default: x}\n".utf8)
            )
        case 6:
            return ("bomb", Array(bomb(levels: int(3...12), fanOut: int(2...10)).utf8))
        case 7:
            let depth = int(10...20_000)
            let flow = String(repeating: "[", count: depth) + String(repeating: "]", count: depth)
            let block = (0..<min(depth, 2_000)).map { String(repeating: " ", count: $0) + "k\($0):" }.joined(separator: "\n")
            return (
                "deep", Array("image: a\nfrom: {debootstrap: {suite: bookworm}}\nlabels: \(int(0...1) == 0 ? flow : "\n" + block)\n".utf8)
            )
        case 8:
            // Just under the 1 MiB limit is the slowest input to parse: one in twenty.
            let size = int(0...19) == 0 ? 900_000 : pick([1_000, 50_000, 1_100_000, 3_000_000])
            let scalar = String(repeating: pick(["a", "é", " ", "\\u0041"]), count: size / 2)
            return ("huge scalar", Array("image: a\nfrom: {debootstrap: {suite: bookworm}}\ndescription: \"\(scalar)\"\n".utf8))
        case 9:
            let key = pick(["image", "from", "vars", "provision", "labels"])
            return ("duplicate key", Array((String(decoding: bytes, as: UTF8.self) + "\n\(key): x\n").utf8))
        case 10:
            var text = "image: a\nfrom: {debootstrap: {suite: bookworm}}\nlabels:\n"
            for i in 0..<int(100...3_000) { text += "  k\(i % int(50...5_000)): v\n" }
            return ("many keys", Array(text.utf8))
        default:
            let invalid: [[UInt8]] = [[0xFF], [0xC3], [0xED, 0xA0, 0x80], [0xF4, 0x90, 0x80, 0x80], [0xC0, 0xAF]]
            bytes.insert(contentsOf: pick(invalid), at: int(0...bytes.count))
            return ("invalid UTF-8", bytes)
        }
    }

    /// The "billion laughs": each level a list of aliases to the one before.
    mutating func bomb(levels: Int, fanOut: Int) -> String {
        var text = "image: a\nfrom: {debootstrap: {suite: bookworm}}\nx0: &x0 [lol]\n"
        for level in 1...levels {
            let aliases = Array(repeating: "*x\(level - 1)", count: fanOut).joined(separator: ", ")
            text += "x\(level): &x\(level) [\(aliases)]\n"
        }
        // As a mapping key too: Yams hashes keys to find duplicates.
        return text + pick(["labels: *x\(levels)\n", "? *x\(levels)\n: 1\n", "provision: *x\(levels)\n", "vars: {a: *x\(levels)}\n"])
    }
}

@Suite("Template loader under fuzzing")
struct TemplateFuzzTests {
    /// Every rejection must be `file:line:col: error: message`, with a real position.
    static func wellFormed(_ diagnostic: Diagnostic, directory: String) -> Bool {
        let file = diagnostic.file
        return file.hasPrefix(directory + "/") && diagnostic.line >= 1 && diagnostic.column >= 1 && !diagnostic.message.isEmpty
            && diagnostic.description.hasPrefix("\(file):\(diagnostic.line):\(diagnostic.column): error: ")
    }

    /// CPU time of the calling thread: the fuzz loop is synchronous, so it stays on one thread.
    static func threadCPUTime() -> Duration {
        var now = timespec()
        clock_gettime(CLOCK_THREAD_CPUTIME_ID, &now)
        return .seconds(now.tv_sec) + .nanoseconds(now.tv_nsec)
    }

    @Test(
        "10,000 mutated and generated templates: no crash, no hang, every rejection file:line:col: error",
        .tags(.long))
    func fuzzTemplateLoader() throws {
        let environment = ProcessInfo.processInfo.environment
        let seed = environment["KILN_FUZZ_SEED"].flatMap { UInt64($0) } ?? 20_261_123
        let count = environment["KILN_FUZZ_COUNT"].flatMap { Int($0) } ?? 10_000
        let examples = URL(fileURLWithPath: #filePath).deletingLastPathComponent().appendingPathComponent("../../examples/debian")
            .standardizedFileURL.path
        let dir = NSTemporaryDirectory() + "kiln-fuzz-" + UUID().uuidString
        try FileManager.default.copyItem(atPath: examples, toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let names = ["base.yaml", "app.yaml", "product.yaml"]
        let originals = try names.map { [UInt8](try Data(contentsOf: URL(fileURLWithPath: dir + "/" + $0))) }
        var mutator = TemplateMutator(random: SeededGenerator(state: seed), corpus: originals)
        let loader = TemplateLoader(environment: [:])
        var accepted = 0
        var rejected = 0
        var slowest: (Duration, String) = (.zero, "")
        var failures: [String] = []
        for index in 0..<count {
            let (kind, bytes) = mutator.next()
            // Most inputs are loaded alone; every tenth replaces one file of the examples graph.
            let which = index % names.count
            let path = index % 10 == 0 ? dir : dir + "/fuzz.yaml"
            let file = dir + "/" + (index % 10 == 0 ? names[which] : "fuzz.yaml")
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let started = ContinuousClock.now
            let startedCPU = Self.threadCPUTime()
            do {
                let set = try loader.load(path: path)
                _ = try ImageGraph(set, knownFamilies: ["debian-12-base", "debian-12-nginx"])
                accepted += 1
            } catch let failure as ValidationFailure {
                rejected += 1
                for diagnostic in failure.diagnostics where !Self.wellFormed(diagnostic, directory: dir) {
                    failures.append("input \(index) (\(kind)): malformed diagnostic \(diagnostic.description)")
                }
                if failure.diagnostics.isEmpty { failures.append("input \(index) (\(kind)): rejected with no diagnostic") }
            } catch {
                failures.append("input \(index) (\(kind)): not a positioned error: \(error)")
            }
            // The bound is on the CPU the load used: under CI the tests share two cores with
            // QEMU, and a wall-clock limit measured the machine's load as much as the loader.
            // The wall clock still catches a load that waits on something.
            let elapsed = Self.threadCPUTime() - startedCPU
            let wall = ContinuousClock.now - started
            if elapsed > slowest.0 { slowest = (elapsed, kind) }
            if elapsed > .seconds(2) { failures.append("input \(index) (\(kind)) used \(elapsed) of CPU") }
            if wall > .seconds(20) { failures.append("input \(index) (\(kind)) took \(wall)") }
            if index % 10 == 0 { try Data(originals[which]).write(to: URL(fileURLWithPath: file)) }
            if failures.count > 20 { break }
        }
        try? FileManager.default.removeItem(atPath: dir + "/fuzz.yaml")
        print(
            "fuzz: \(count) templates tried (seed \(seed), KILN_FUZZ_SEED/KILN_FUZZ_COUNT to change): \(accepted) accepted, \(rejected) rejected with positions, \(failures.count) failures; slowest \(slowest.0) of CPU (\(slowest.1))"
        )
        #expect(failures.isEmpty, "\(failures.prefix(20).joined(separator: "\n"))")
        #expect(rejected > count / 2, "the mutations should mostly break templates")
    }

    @Test("a YAML bomb, deep nesting and invalid UTF-8 are rejected at their position")
    func limitsReportPositions() throws {
        let dir = NSTemporaryDirectory() + "kiln-limits-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        var mutator = TemplateMutator(random: SeededGenerator(state: 1), corpus: [[]])
        let cases: [(String, [UInt8], String)] = [
            ("bomb.yaml", Array(mutator.bomb(levels: 9, fanOut: 10).utf8), "expands to more than 100000 nodes"),
            (
                "deep.yaml",
                Array(("image: a\nfrom: x\nlabels: " + String(repeating: "[", count: 100) + String(repeating: "]", count: 100)).utf8),
                "nested more than 64 levels"
            ),
            ("utf8.yaml", Array("image: a\nfrom: x\ndescription: caf".utf8) + [0xC3, 0x28] + Array("\n".utf8), "not valid UTF-8"),
        ]
        for (name, bytes, message) in cases {
            let file = dir + "/" + name
            try Data(bytes).write(to: URL(fileURLWithPath: file))
            let error = #expect(throws: ValidationFailure.self) { try TemplateLoader(environment: [:]).load(path: file) }
            let diagnostic = try #require(error?.diagnostics.first)
            #expect(diagnostic.message.contains(message), "\(diagnostic)")
            #expect(diagnostic.line > 1, "\(diagnostic): the position of the offending node, not the file's start")
        }
    }
}

@Suite("Hostile names in templates")
struct HostileTemplateNameTests {
    @Test("family and variable names that could escape the store or a shell are refused at their position")
    func hostileNamesRefused() throws {
        let dir = NSTemporaryDirectory() + "kiln-hostile-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let file = dir + "/t.yaml"
        // As written inside YAML double quotes, where backslash-n is a newline.
        let names = ["../../etc", "a/b", "a b", "'q'", "$(touch x)", "a\\nb", "..", "Shop", "a;b", "a\\\"b"]
        for written in names {
            let name = written.replacingOccurrences(of: "\\n", with: "\n").replacingOccurrences(of: "\\\"", with: "\"")
            try "image: \"\(written)\"\nfrom: {debootstrap: {suite: bookworm}}\n".write(toFile: file, atomically: true, encoding: .utf8)
            let error = #expect(throws: ValidationFailure.self) { try TemplateLoader(environment: [:]).load(path: file) }
            #expect(
                error?.diagnostics.map(\.description) == [
                    "\(file):1:8: error: invalid family name '\(name)': must match [a-z0-9][a-z0-9-]{0,62}"
                ])
            guard written != "Shop" else { continue }  // a valid variable name
            try "image: a\nfrom: {debootstrap: {suite: bookworm}}\nvars:\n  \"\(written)\": {default: x}\n".write(
                toFile: file, atomically: true, encoding: .utf8)
            let variable = #expect(throws: ValidationFailure.self) { try TemplateLoader(environment: [:]).load(path: file) }
            #expect(variable?.diagnostics.first?.line == 4, "\(String(describing: variable))")
        }
    }
}

extension Tag {
    /// Long-running tests: .ci/run runs them (they are part of `make test`).
    @Tag static var long: Self
}
