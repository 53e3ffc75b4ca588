import Foundation
import KilnBuild
import KilnModel

#if canImport(Glibc)
    import Glibc
#endif

/// Pauses at breakpoints on the terminal kiln runs in: Enter on standard input continues.
/// One pause at a time: builds that run in parallel may reach theirs together.
actor TerminalPrompt: BreakpointPrompt {
    private var busy = false

    /// Someone can answer: standard input and standard error are a terminal.
    static var isAvailable: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDERR_FILENO) == 1 }

    func pause(_ message: String) async throws {
        while busy { try await Task.sleep(for: .milliseconds(100)) }
        busy = true
        defer { busy = false }
        // Keys pressed while the build ran must not answer a prompt they never saw.
        tcflush(STDIN_FILENO, TCIFLUSH)
        try? FileHandle.standardError.write(contentsOf: Data("\n\(message)\n".utf8))
        try await Self.waitForLine()
    }

    /// Polls rather than blocks, so Ctrl-C (a cancelled build) ends the wait at once.
    private static func waitForLine() async throws {
        var byte: UInt8 = 0
        while true {
            var request = pollfd(fd: STDIN_FILENO, events: Int16(POLLIN), revents: 0)
            if poll(&request, 1, 0) == 1 {
                let count = read(STDIN_FILENO, &byte, 1)
                // A closed terminal continues the build: nobody is left to answer.
                if count <= 0 || byte == UInt8(ascii: "\n") || byte == UInt8(ascii: "\r") { return }
                continue
            }
            try await Task.sleep(for: .milliseconds(100))
        }
    }
}
