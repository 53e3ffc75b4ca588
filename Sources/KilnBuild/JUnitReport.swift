import Foundation
import KilnCore
import Synchronization

#if canImport(FoundationXML)
    import FoundationXML
#endif

/// `kiln build --junit FILE`: the build as JUnit XML, the format CI systems read test results
/// in (GitLab's `artifacts:reports:junit`, Jenkins, GitHub's test reporters). One test suite
/// per image, one test case per stage of its build and per test step (docs/testing.md);
/// an image that was up to date is one skipped case. Collected from the build's events, so it
/// says what the console and `--json` say.
public final class JUnitReport: BuildReporter {
    /// The events go on to this reporter too (the console, or `--json`).
    let next: (any BuildReporter)?

    struct Case {
        var name: String
        /// `kiln.build` for the stages of a build, `kiln.test` for a test boot and its steps.
        var kind: String
        var seconds: Double = 0
        var failure: String?
        var skipped: String?
        /// The step's last lines of output, kept for a failed case.
        var output: [String] = []
    }

    struct Suite {
        var family: String
        var image: String?
        var build: String?
        var started: Date
        var cases: [Case] = []
    }

    private struct State {
        var suites: [Suite] = []
        /// Suite and case index of each family's open step.
        var open: [String: Int] = [:]
    }
    private let state = Mutex(State())
    static let keptLines = 100

    public init(forwardingTo next: (any BuildReporter)?) { self.next = next }

    public func report(_ event: BuildEvent) {
        next?.report(event)
        state.withLock { state in
            func suite() -> Int {
                if let index = state.suites.lastIndex(where: { $0.family == event.family }) { return index }
                state.suites.append(Suite(family: event.family, started: event.time))
                return state.suites.count - 1
            }
            switch event.event {
            case .buildStarted, .testsStarted:
                let index = suite()
                state.suites[index].build = state.suites[index].build ?? event.build
            case .upToDate:
                let index = suite()
                state.suites[index].image = event.image
                // A test run on an image already built says why here; an up-to-date image is one skipped case.
                if event.text == nil {
                    state.suites[index].cases.append(
                        Case(name: "up to date", kind: "kiln.build", skipped: "built from the same inputs: \(event.image ?? "?")"))
                }
            case .stepStarted:
                let index = suite()
                let name = event.step ?? "?"
                let kind = name.hasPrefix("test") ? "kiln.test" : "kiln.build"
                state.suites[index].cases.append(Case(name: name, kind: kind))
                state.open[event.family] = state.suites[index].cases.count - 1
            case .output:
                let index = suite()
                if let open = state.open[event.family] {
                    var lines = state.suites[index].cases[open].output
                    lines.append("[\(event.source ?? "kiln")] \(event.text ?? "")")
                    if lines.count > Self.keptLines { lines.removeFirst(lines.count - Self.keptLines) }
                    state.suites[index].cases[open].output = lines
                }
            case .stepFinished:
                let index = suite()
                guard let open = state.open[event.family] else { break }
                state.suites[index].cases[open].seconds = event.seconds ?? 0
                if event.ok == false && state.suites[index].cases[open].failure == nil {
                    state.suites[index].cases[open].failure = "failed"
                }
            case .failed, .testsFailed:
                let index = suite()
                // The failure's message goes on the case it happened in (the open one).
                if let open = state.open[event.family] {
                    let message = event.text ?? "failed"
                    if state.suites[index].cases[open].failure == nil || state.suites[index].cases[open].failure == "failed" {
                        state.suites[index].cases[open].failure = message
                    }
                }
            case .imageReady, .testsPassed:
                let index = suite()
                state.suites[index].image = event.image ?? state.suites[index].image
            case .waiting, .promoted:
                break
            }
        }
    }

    /// The report as XML: `<testsuites>` with each image's `<testsuite>`.
    public func xml() -> String {
        let suites = state.withLock { $0.suites }
        let root = XMLElement(name: "testsuites")
        root.addAttribute(Self.attribute("name", "kiln build"))
        var totals = (tests: 0, failures: 0, skipped: 0, time: 0.0)
        for suite in suites {
            let element = XMLElement(name: "testsuite")
            let failures = suite.cases.filter { $0.failure != nil }.count
            let skipped = suite.cases.filter { $0.skipped != nil }.count
            let time = suite.cases.reduce(0) { $0 + $1.seconds }
            for (name, value) in [
                ("name", suite.family), ("tests", String(suite.cases.count)), ("failures", String(failures)), ("errors", "0"),
                ("skipped", String(skipped)), ("time", Self.seconds(time)), ("timestamp", suite.started.formatted(.iso8601)),
            ] {
                element.addAttribute(Self.attribute(name, value))
            }
            let properties = XMLElement(name: "properties")
            for (name, value) in [("image", suite.image), ("build", suite.build)] {
                guard let value else { continue }
                let property = XMLElement(name: "property")
                property.addAttribute(Self.attribute("name", name))
                property.addAttribute(Self.attribute("value", value))
                properties.addChild(property)
            }
            if properties.childCount > 0 { element.addChild(properties) }
            for testCase in suite.cases {
                let child = XMLElement(name: "testcase")
                child.addAttribute(Self.attribute("name", testCase.name))
                child.addAttribute(Self.attribute("classname", "\(testCase.kind).\(suite.family)"))
                child.addAttribute(Self.attribute("time", Self.seconds(testCase.seconds)))
                if let failure = testCase.failure {
                    let node = XMLElement(name: "failure")
                    node.addAttribute(Self.attribute("message", String(failure.prefix(1000))))
                    node.stringValue = Self.xmlSafe(failure)
                    child.addChild(node)
                    if !testCase.output.isEmpty {
                        child.addChild(XMLElement(name: "system-out", stringValue: Self.xmlSafe(testCase.output.joined(separator: "\n"))))
                    }
                } else if let skipped = testCase.skipped {
                    let node = XMLElement(name: "skipped")
                    node.addAttribute(Self.attribute("message", skipped))
                    child.addChild(node)
                }
                element.addChild(child)
            }
            root.addChild(element)
            totals = (totals.tests + suite.cases.count, totals.failures + failures, totals.skipped + skipped, totals.time + time)
        }
        for (name, value) in [
            ("tests", String(totals.tests)), ("failures", String(totals.failures)), ("errors", "0"), ("skipped", String(totals.skipped)),
            ("time", Self.seconds(totals.time)),
        ] {
            root.addAttribute(Self.attribute(name, value))
        }
        let document = XMLDocument(rootElement: root)
        document.version = "1.0"
        document.characterEncoding = "UTF-8"
        return document.xmlString(options: [.nodePrettyPrint]) + "\n"
    }

    /// Writes the report to `path` through a temporary name, so a reader never sees half of it.
    public func write(to path: String) throws {
        let temporary = path + ".tmp-\(getpid())"
        do {
            try Data(xml().utf8).write(to: URL(fileURLWithPath: temporary))
            if rename(temporary, path) != 0 { throw KilnError(.io, "cannot rename \(temporary) to \(path)") }
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw KilnError(.io, "cannot write the JUnit report \(path)", cause: error)
        }
    }

    /// Text a guest printed may hold bytes XML 1.0 cannot carry (escape sequences): left out.
    static func attribute(_ name: String, _ value: String) -> XMLNode {
        XMLNode.attribute(withName: name, stringValue: xmlSafe(value)) as! XMLNode
    }

    static func xmlSafe(_ text: String) -> String {
        String(
            String.UnicodeScalarView(
                text.unicodeScalars.filter { scalar in
                    scalar == "\t" || scalar == "\n" || scalar == "\r"
                        || (scalar.value >= 0x20 && scalar.value != 0xFFFE && scalar.value != 0xFFFF)
                }))
    }

    static func seconds(_ value: Double) -> String { String(format: "%.3f", value) }
}
