import Foundation
import KilnCore
import Testing

@testable import KilnExport

/// `kiln export --force` replaces an earlier kiln export of the same format, never what else
/// sits at the output path: before, `--force --output DIR` deleted an unrelated directory (and
/// detached a filesystem mounted inside it).
@Suite("export --force replaces only kiln's own artifacts")
struct ExportForceTests {
    let dir = NSTemporaryDirectory() + "kiln-force-" + UUID().uuidString

    func make(_ name: String, directory: Bool = false, provenance: Bool) throws -> String {
        let path = dir + "/" + name
        if directory {
            try FileManager.default.createDirectory(atPath: path + "/data", withIntermediateDirectories: true)
            try "keep".write(toFile: path + "/data/file", atomically: true, encoding: .utf8)
        } else {
            try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
            try "bytes".write(toFile: path, atomically: true, encoding: .utf8)
        }
        if provenance { try "{}".write(toFile: path + ".provenance.json", atomically: true, encoding: .utf8) }
        return path
    }

    @Test("a directory, a file without kiln's record, a symbolic link and the wrong kind are refused and left in place")
    func refused() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let userDirectory = try make("photos", directory: true, provenance: false)
        let userFile = try make("notes.qcow2", provenance: false)
        let disguised = try make("app.qcow2", directory: true, provenance: true)
        let link = dir + "/link.qcow2"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: userFile)
        try "{}".write(toFile: link + ".provenance.json", atomically: true, encoding: .utf8)
        for (path, format) in [
            (userDirectory, ExportFormat.qcow2), (userDirectory, .oci), (userFile, .qcow2), (disguised, .qcow2), (link, .qcow2),
        ] {
            #expect(throws: KilnError.self) { try Exporter.removePreviousExport(at: path, format: format) }
            #expect(FileManager.default.fileExists(atPath: path))
        }
        #expect(FileManager.default.fileExists(atPath: userDirectory + "/data/file"))
        #expect(FileManager.default.fileExists(atPath: userFile))
    }

    @Test("an earlier kiln export of the same format is replaced: a disk file, an OCI layout")
    func replaced() throws {
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let disk = try make("app.qcow2", provenance: true)
        try Exporter.removePreviousExport(at: disk, format: .qcow2)
        #expect(!FileManager.default.fileExists(atPath: disk))
        let layout = try make("app.oci", directory: true, provenance: true)
        try #"{"imageLayoutVersion": "1.0.0"}"#.write(toFile: layout + "/oci-layout", atomically: true, encoding: .utf8)
        try Exporter.removePreviousExport(at: layout, format: .oci)
        #expect(!FileManager.default.fileExists(atPath: layout))
    }
}
