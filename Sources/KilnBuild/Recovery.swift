import Foundation
import KilnCore
import KilnModel
import KilnStore

/// Puts a store back in order after kiln processes that died without finishing (`kill -9`, a
/// power cut): their surviving children (QEMU, ssh, mmdebstrap) are killed, their builds are
/// recorded as failed with the log they had written archived, and their staging and scratch
/// directories are removed. Nothing they had not sealed and named was ever visible as an image.
/// `kiln build`, `kiln gc` (unless it is a dry run) and `kiln verify` run it first.
public enum Recovery {
    /// Files in a build's scratch directory naming the blob it sealed, written before the blob
    /// appears under its digest: the image's disk, and a source disk made for it.
    static let sealedMarker = "sealed"
    static let sealedSourceMarker = "sealed-source"

    public struct Report: Sendable {
        public var reaped: [ProcessRegistry.Reaped] = []
        public var interrupted: [BuildRecord] = []
    }

    public static func run(_ store: Store) throws -> Report {
        var report = Report()
        report.reaped = ProcessRegistry.shared.reap(directory: store.runDirectory)
        let fm = FileManager.default
        for build in try store.catalog.builds(status: .running) where !store.mayBeRunning(build) {
            var record = build
            let scratch = store.scratchDirectory(buildID: build.id)
            // A run of tests on their own writes tests.log only.
            let logPath = scratch + (fm.fileExists(atPath: scratch + "/build.log") ? "/build.log" : "/tests.log")
            let message = "interrupted: the kiln process (pid \(build.pid)) stopped before the build finished"
            // The stage the build entered last, as it wrote it; else as its log tells.
            let phase = (try? String(contentsOfFile: scratch + "/" + StepTracker.phaseFileName, encoding: .utf8))
                .flatMap { $0.isEmpty ? nil : $0 }
            record.failedStep = phase
            if fm.fileExists(atPath: logPath) {
                record.failedStep = phase ?? lastStep(inLog: logPath)
                if let handle = FileHandle(forWritingAtPath: logPath) {
                    handle.seekToEndOfFile()
                    handle.write(
                        Data("\(BuildLog.timestamp(Date())) [\(build.family)] [kiln] \(message); recovered by pid \(getpid())\n".utf8))
                    try? handle.close()
                }
                let archive = store.logArchivePath(buildID: build.id)
                if (try? LogArchive.write(Builder.logFiles(in: scratch), to: archive.absolute)) != nil { record.log = archive.relative }
            }
            var testsInterrupted = false
            if var run = try store.catalog.testRun(id: build.id), run.status == .running {
                // The image stays as it was (TESTING stays TESTING): its next build tests it again.
                run.status = .cancelled
                run.finished = Date()
                run.message = message
                run.failedStep = record.failedStep
                try store.catalog.finish(run)
                testsInterrupted = true
            }
            let named = try store.catalog.images().first(where: { $0.buildID == build.id })
            // Sealed but never named (the image's disk, or the source disk it was made from):
            // the blob is nobody's, unless an image or source has the same bytes.
            for marker in [Self.sealedMarker, Self.sealedSourceMarker] {
                guard let digest = try? String(contentsOfFile: scratch + "/" + marker, encoding: .utf8),
                    !digest.isEmpty, !digest.contains("/"), try !store.catalog.namesBlob(digest)
                else { continue }
                try? Store.removeTree(store.blobDirectory(digest: digest))
            }
            if let image = named, testsInterrupted {
                // Named, but its tests never finished: the build did not do what it was asked.
                record.status = .failed
                record.image = image.name
                record.message = "\(message): \(image.name) was named, but its tests were interrupted (it stays \(image.state.rawValue))"
            } else if let image = named {
                // Killed after the catalog named the image: the image is whole; only the record lagged.
                record.status = .succeeded
                record.image = image.name
                record.message = "the kiln process (pid \(build.pid)) stopped after \(image.name) was committed"
            } else {
                record.status = .failed
                record.message = message
            }
            record.finished = Date()
            try store.catalog.update(record)
            for path in [scratch, store.stagingDirectory(buildID: build.id), store.stagingDirectory(buildID: build.id) + "-source"] {
                try? Store.removeTree(path)
            }
            report.interrupted.append(record)
        }
        return report
    }

    /// The phase the log reached last, in the words a finished build's record uses.
    static func lastStep(inLog path: String) -> String {
        let text = (try? String(contentsOfFile: path, encoding: .utf8)) ?? ""
        var step = "prepare"
        for line in text.split(separator: "\n") {
            guard let range = line.range(of: "[kiln] ") else { continue }
            let event = line[range.upperBound...]
            if event.hasPrefix("source disk") || event.hasPrefix("bootstrapping") || event.hasPrefix("downloading") {
                step = "source"
            } else if event.hasPrefix("booting VM") {
                step = "boot"
            } else if event.hasPrefix("step ") {
                step = String(event.dropFirst(5))
            } else if event.hasPrefix("removing build credentials") {
                step = "shutdown"
            } else if event.hasPrefix("VM stopped") {
                step = "snapshot"
            } else if event.hasPrefix("testing ") {
                step = "test boot"
            }
        }
        return step
    }
}
