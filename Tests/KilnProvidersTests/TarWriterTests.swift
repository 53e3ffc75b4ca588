import Foundation
import KilnCore
import Testing

@testable import KilnProviders

@Suite("Upload archives")
struct TarWriterTests {
    @Test("uploads are packed as root-owned tar entries, directory contents or the directory itself")
    func tarWriter() async throws {
        let dir = NSTemporaryDirectory() + "kiln-tar-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir + "/site/sub", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        try "a".write(toFile: dir + "/site/index.html", atomically: true, encoding: .utf8)
        try "b".write(toFile: dir + "/site/sub/x.css", atomically: true, encoding: .utf8)
        try TarWriter.write(source: dir + "/site", prefix: "", to: dir + "/contents.tar")
        let contents = try await ProcessRunner.check("tar", ["-tvf", dir + "/contents.tar"]).stdout
        #expect(contents.contains("root/root"))
        let names = try await ProcessRunner.check("tar", ["-tf", dir + "/contents.tar"]).stdout.split(separator: "\n").sorted()
        #expect(names == ["index.html", "sub/", "sub/x.css"])
        try TarWriter.write(source: dir + "/site", prefix: "site", to: dir + "/dir.tar")
        let dirNames = try await ProcessRunner.check("tar", ["-tf", dir + "/dir.tar"]).stdout.split(separator: "\n").sorted()
        #expect(dirNames == ["site/", "site/index.html", "site/sub/", "site/sub/x.css"])
    }
}
