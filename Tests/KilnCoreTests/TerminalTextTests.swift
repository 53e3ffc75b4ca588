import Testing

@testable import KilnCore

@Suite("Text shown on a terminal")
struct TerminalTextTests {
    @Test("escape sequences, other C0 and C1 controls and DEL are shown, not obeyed; tabs and ordinary text pass")
    func sanitized() {
        // Clear the screen, retitle the window, a C1 CSI, a bell, DEL.
        let hostile = "ok\u{1B}[2J\u{1B}]0;pwned\u{07} \u{9B}31m x\u{7F}"
        let shown = TerminalText.sanitize(hostile)
        #expect(!shown.unicodeScalars.contains { TerminalText.isControl($0) })
        #expect(shown == "ok^[[2J^[]0;pwned^G \\u{9b}31m x^?")
        #expect(TerminalText.sanitize("a\tb é 漢字") == "a\tb é 漢字")
    }
}
