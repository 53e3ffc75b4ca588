// B7: how long kiln takes to snapshot a child image (Store.seal, the code a build runs after
// the VM powered off) when the child changed 10 MiB on a 2 GiB and on an 8 GiB parent. Beside
// it, a full copy of the same child with `qemu-img convert`, which is what Packer does at the
// end of every build.
import Foundation
import KilnCore
import KilnModel
import KilnStore

func snapshotBenchmark(directory: String) async throws {
    let runs = 3
    for gib in [2, 8] {
        let store = try Store(root: directory + "/snapshot-\(gib)g")
        defer { try? FileManager.default.removeItem(atPath: store.root) }
        // A parent whose every block is written: its size is what a copying builder pays for.
        let parentDigest = "parent-\(gib)g"
        let parent = store.blobDirectory(digest: parentDigest)
        try FileManager.default.createDirectory(atPath: parent, withIntermediateDirectories: true)
        try await ProcessRunner.check("qemu-img", ["create", "-q", "-f", "qcow2", parent + "/disk.qcow2", "\(gib)G"])
        // qemu-io takes at most 2 GiB - 1 per request: one command per GiB.
        let writes = (0..<gib).flatMap { ["-c", "write -q -P 0x11 \($0)G 1G"] }
        try await ProcessRunner.check("qemu-io", ["-f", "qcow2"] + writes + [parent + "/disk.qcow2"])
        var seals: [Double] = []
        var copies: [Double] = []
        for run in 0..<runs {
            let staging = store.stagingDirectory(buildID: "bench-\(run)")
            try FileManager.default.createDirectory(atPath: staging, withIntermediateDirectories: true)
            let child = staging + "/disk.qcow2"
            try await ProcessRunner.check(
                "qemu-img", ["create", "-q", "-f", "qcow2", "-b", "../\(parentDigest)/disk.qcow2", "-F", "qcow2", child],
                workingDirectory: staging)
            // 10 MiB changed in the middle of the disk, a different pattern per run (distinct digests).
            try await ProcessRunner.check("qemu-io", ["-f", "qcow2", "-c", "write -q -P \(0x22 + run) 1G 10M", child])
            var digest = ""
            seals.append(try seconds { digest = try store.seal(staging: staging).digest })
            let sealed = store.blobDirectory(digest: digest) + "/disk.qcow2"
            let copy = directory + "/full-copy.qcow2"
            let begin = ContinuousClock.now
            try await ProcessRunner.check("qemu-img", ["convert", "-O", "qcow2", sealed, copy])
            let d = (ContinuousClock.now - begin).components
            copies.append(Double(d.seconds) + Double(d.attoseconds) / 1e18)
            try? FileManager.default.removeItem(atPath: copy)
        }
        let (smin, smed, smax) = summary(seals)
        let (cmin, cmed, cmax) = summary(copies)
        print(
            String(
                format: "| %d GiB parent, 10 MiB changed (%d runs) | %.3f s | %.3f s | %.3f s | %.2f s | %.2f s | %.2f s |",
                gib, runs, smin, smed, smax, cmin, cmed, cmax))
    }
}
