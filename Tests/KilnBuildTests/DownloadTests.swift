import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnBuild

/// A real HTTP server on loopback (Tests/KilnBuildTests/Fixtures/range_server.py).
final class RangeServer {
    let process = Process()
    let output = Pipe()
    let port: Int

    init(serving directory: String, stallFirstResponseAfter cut: Int) throws {
        let script = URL(fileURLWithPath: #filePath).deletingLastPathComponent().path + "/Fixtures/range_server.py"
        let portFile = directory + "/.port"
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", script, directory, portFile, String(cut)]
        process.standardOutput = output
        try process.run()
        // Our copy of the write end would keep the pipe open after the server exits.
        try output.fileHandleForWriting.close()
        let deadline = Date().addingTimeInterval(10)
        while !FileManager.default.fileExists(atPath: portFile) && Date() < deadline { usleep(20_000) }
        port = Int(try String(contentsOfFile: portFile, encoding: .utf8)) ?? 0
    }

    func stop() -> String {
        // SIGKILL: Foundation's Process starts children with most signals blocked, SIGTERM included.
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
        return String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
    }
}

@Suite("Downloads over HTTP (loopback server)", .serialized)
struct DownloadTests {
    @Test("an interrupted download resumes with a Range request and completes byte for byte")
    func resumes() async throws {
        let dir = NSTemporaryDirectory() + "kiln-download-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/www", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let payload = Data((0..<(3 << 20)).map { UInt8(truncatingIfNeeded: $0 &* 31) })
        try payload.write(to: URL(fileURLWithPath: dir + "/www/disk.img"))
        let server = try RangeServer(serving: dir + "/www", stallFirstResponseAfter: 1 << 20)
        let url = URL(string: "http://127.0.0.1:\(server.port)/disk.img")!
        let target = dir + "/disk.img"
        // The first transfer stalls half way; stop it as Ctrl-C would.
        let first = Task { try await Download.fetch(url, to: target) }
        var partial = 0
        for _ in 0..<200 where partial < 1 << 20 {
            try await Task.sleep(for: .milliseconds(50))
            partial = (try? FileManager.default.attributesOfItem(atPath: target + ".part")[.size] as? Int) ?? 0
        }
        first.cancel()
        await #expect(throws: (any Error).self) { try await first.value }
        partial = try FileManager.default.attributesOfItem(atPath: target + ".part")[.size] as? Int ?? 0
        #expect(partial == 1 << 20)
        let resumedFrom = try await Download.fetch(url, to: target)
        let log = server.stop()
        #expect(resumedFrom == UInt64(partial))
        #expect(FileManager.default.contents(atPath: target) == payload)
        #expect(!FileManager.default.fileExists(atPath: target + ".part"))
        #expect(log.contains("range=bytes=\(partial)-"))
    }

    @Test("an HTTP error fails the download with the status")
    func httpError() async throws {
        let dir = NSTemporaryDirectory() + "kiln-download-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/www", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let server = try RangeServer(serving: dir + "/www", stallFirstResponseAfter: 0)
        defer { _ = server.stop() }
        do {
            try await Download.fetch(URL(string: "http://127.0.0.1:\(server.port)/missing.img")!, to: dir + "/x")
            Issue.record("expected an error")
        } catch let error as KilnError {
            #expect(error.message.contains("HTTP 404"))
        }
    }
}
