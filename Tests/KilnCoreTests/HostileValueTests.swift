import Foundation
import Testing

@testable import KilnCore

@Suite("Hostile values")
struct HostileValueTests {
    static let hostile = [
        "plain", "", "a b", "'", "''", "\"", "$(touch /tmp/kiln-pwned)", "`touch /tmp/kiln-pwned`", "a\nb", "a\\b", "*", "~root",
        "; rm -rf /tmp/kiln-pwned", "${HOME}", "$HOME", "-n", "--", "é\u{202e}x", "a'b'c", "'\\''", "\t", "!x", "#comment",
    ]

    @Test("quoted values reach a real shell's command as the same bytes and are never run")
    func shellQuoteRoundTrips() async throws {
        let marker = "/tmp/kiln-pwned"
        try? FileManager.default.removeItem(atPath: marker)
        // The way kiln builds the guest's command: `env NAME=VALUE ... program`, quoted word by word.
        let words = Self.hostile.map { "V=" + $0 }
        let line = ShellQuote.join(["env", "-i"] + words + ["/bin/sh", "-c", "printf '%s\\0' \"$V\""])
        // Each word sets V again; the last one wins: check every value in turn.
        for value in Self.hostile {
            let single = ShellQuote.join(["env", "-i", "V=" + value, "/bin/sh", "-c", "printf '%s\\0' \"$V\""])
            let result = try await ProcessRunner.run("/bin/sh", ["-c", single])
            #expect(result.status == 0)
            // ProcessRunner collects output line by line, each ending in a newline.
            #expect(result.stdout == value + "\0\n", "value \(value.debugDescription) came back as \(result.stdout.debugDescription)")
        }
        let all = try await ProcessRunner.run("/bin/sh", ["-c", line])
        #expect(all.stdout == Self.hostile.last! + "\0\n")
        #expect(!FileManager.default.fileExists(atPath: marker), "a value was executed by the shell")
    }

    @Test("family, variable and label names match one pattern; everything hostile is refused")
    func namesFollowOnePattern() {
        for name in ["debian-12-base", "a", "web2", String(repeating: "a", count: 63)] { #expect(Names.isValidFamily(name), "\(name)") }
        let refused =
            Self.hostile + [
                "../x", "a/b", "..", ".", "A", "-a", "a_b", String(repeating: "a", count: 64), "a\u{0}b", "ａ",
            ]
        for name in refused where name != "plain" { #expect(!Names.isValidFamily(name), "\(name.debugDescription)") }
        for name in ["greeting", "_x", "A1", "RELEASE_2"] { #expect(Names.isValidIdentifier(name), "\(name)") }
        for name in Self.hostile where name != "plain" {
            #expect(!Names.isValidIdentifier(name), "\(name.debugDescription)")
        }
        for name in ["layer", "app.kubernetes.io/name"] { #expect(Names.isValidLabelKey(name), "\(name)") }
        for name in ["../x", "a b", "$(x)", "A", "a\nb", "", "/a"] { #expect(!Names.isValidLabelKey(name), "\(name.debugDescription)") }
    }
}
