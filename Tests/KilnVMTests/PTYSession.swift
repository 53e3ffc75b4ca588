import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// A process whose standard input, output and error are a pseudo-terminal, driven like a
/// person at a keyboard: the test reads what it printed and types lines.
final class PTYSession: @unchecked Sendable {
    private let master: Int32
    private let process = Process()
    private let output = Locked("")

    init(_ executable: String, _ arguments: [String]) throws {
        var master: Int32 = -1
        var slave: Int32 = -1
        guard openpty(&master, &slave, nil, nil, nil) == 0 else { throw KilnError(.io, "openpty failed") }
        self.master = master
        let terminal = FileHandle(fileDescriptor: slave, closeOnDealloc: true)
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        process.standardInput = terminal
        process.standardOutput = terminal
        process.standardError = terminal
        try process.run()
        // The child has its copies; the last one must go with it for reads to end.
        try terminal.close()
        let output = self.output
        let fd = master
        Thread.detachNewThread {
            var buffer = [UInt8](repeating: 0, count: 4096)
            while true {
                let count = read(fd, &buffer, buffer.count)
                guard count > 0 else { break }
                let text = String(decoding: buffer[0..<count], as: UTF8.self)
                output.withLock { $0 += text }
            }
        }
    }

    var text: String { output.value }

    /// Waits until the output contains `needle`; false when `timeout` passes or the process exits first.
    func waitFor(_ needle: String, timeout: Duration) async throws -> Bool {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if text.contains(needle) { return true }
            if !process.isRunning { return text.contains(needle) }
            try await Task.sleep(for: .milliseconds(200))
        }
        return false
    }

    /// Types `line` and Enter.
    func type(_ line: String) {
        let bytes = Array((line + "\n").utf8)
        _ = bytes.withUnsafeBufferPointer { write(master, $0.baseAddress, $0.count) }
    }

    func interrupt() { kill(process.processIdentifier, SIGINT) }

    /// The exit status, once the process has ended (within `timeout`, else it is killed).
    func wait(timeout: Duration) async throws -> Int32 {
        let deadline = ContinuousClock.now + timeout
        while process.isRunning && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(200)) }
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
        return process.terminationStatus
    }

    deinit {
        if process.isRunning { process.terminate() }
        close(master)
    }
}
