import CNBD
import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// Bytes of a disk by offset: a raw file, or a qcow2 chain served by qemu-nbd.
public protocol DiskReader: AnyObject {
    /// What messages call the disk (its path).
    var name: String { get }
    /// Fills `buffer` from `offset` on; returns the bytes read, fewer only at the disk's end.
    func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int
}

extension DiskReader {
    /// `count` bytes at `offset`; fewer at the disk's end only when `allowShort`.
    public func read(at offset: Int64, count: Int, allowShort: Bool = false) throws -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        let done = try buffer.withUnsafeMutableBytes { try read(into: $0, at: offset) }
        if done < count {
            if allowShort { return Array(buffer[0..<done]) }
            throw KilnError(.io, "\(name): unexpected end of disk at byte \(offset + Int64(done))")
        }
        return buffer
    }
}

/// A raw disk image or a filesystem image in a file.
public final class FileDiskReader: DiskReader {
    public let name: String
    let fd: Int32

    public init(path: String) throws {
        fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw KilnError(.io, "cannot open \(path): \(String(cString: strerror(errno)))") }
        name = path
    }

    deinit { close(fd) }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        var done = 0
        while done < buffer.count {
            let n = pread(fd, buffer.baseAddress! + done, buffer.count - done, off_t(offset) + off_t(done))
            if n < 0 {
                if errno == EINTR { continue }
                throw KilnError(.io, "cannot read \(name): \(String(cString: strerror(errno)))")
            }
            if n == 0 { break }
            done += n
        }
        return done
    }
}

/// A disk image in any format QEMU reads (a store image's qcow2 overlay with its whole backing
/// chain), served read-only by `qemu-nbd` to libnbd, so kiln reads the guest's filesystem in
/// place: no `qemu-img convert` to a raw copy first (seconds and gigabytes for a chain), no
/// kernel nbd module, no mount, no root.
///
/// libnbd starts qemu-nbd itself with systemd socket activation: no socket path to choose or
/// clean up, and the server serves this one connection only, so it ends when the handle is
/// closed, or when kiln dies and the socket closes with it. The format is always named (QEMU
/// never guesses, as ``DiskImage`` explains); callers open only disks kiln wrote or has inspected.
///
/// Small reads (inodes, directory blocks) go through a cache of aligned chunks: an ext4 walk
/// reads a few hundred bytes at a time, and one round trip per inode cost more than the walk.
/// A chunk is one qcow2 cluster (64 KiB): measured on a product image's chain, the walk made
/// 1,445 round trips of 16 KiB (0.12 s), 853 of 64 KiB (0.08 s) and 456 of 256 KiB, no faster
/// (the directories lie scattered, and a larger chunk reads more of what is not needed).
public final class QemuDiskReader: DiskReader {
    public let name: String
    /// The disk's virtual size in bytes.
    public let size: Int64
    private let handle: OpaquePointer
    static let chunk = 64 << 10
    static let maxChunks = 1024
    private var chunks: [Int64: [UInt8]] = [:]
    private var order: [Int64] = []

    /// Serves `path` (in `format`, "qcow2" or "raw") read-only through `qemuNBD`.
    public init(path: String, format: String, qemuNBD: String = "qemu-nbd") throws {
        guard FileManager.default.fileExists(atPath: path) else { throw KilnError(.io, "cannot read \(path): no such file") }
        guard let handle = nbd_create() else { throw Self.failure("cannot start libnbd for \(path)") }
        self.handle = handle
        name = path
        // qemu-nbd's complaints go to a file, then into the error, not onto kiln's terminal;
        // `exec` keeps the process id that socket activation names.
        let errors = NSTemporaryDirectory() + "kiln-nbd-\(getpid())-\(UUID().uuidString).err"
        defer { unlink(errors) }
        let argv = [
            "/bin/sh", "-c", #"errors=$1; shift; exec "$@" 2>"$errors""#, "sh", errors,
            qemuNBD, "--read-only", "--format=\(format)", "--", path,
        ]
        var cArgs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cArgs.forEach { free($0) } }
        guard nbd_connect_systemd_socket_activation(handle, &cArgs) == 0 else {
            let said = (try? String(contentsOfFile: errors, encoding: .utf8))?.trimmingCharacters(in: .whitespacesAndNewlines) ?? ""
            let error = Self.failure("qemu-nbd cannot serve \(path)" + (said.isEmpty ? "" : " (\(said))"))
            nbd_close(handle)
            throw error
        }
        let size = nbd_get_size(handle)
        guard size >= 0 else {
            let error = Self.failure("cannot read the size of \(path)")
            nbd_close(handle)
            throw error
        }
        self.size = size
    }

    /// Closes the connection; libnbd then waits for its qemu-nbd, which exits.
    deinit { nbd_close(handle) }

    private static func failure(_ what: String) -> KilnError {
        let detail = nbd_get_error().map { String(cString: $0) } ?? "no detail"
        return KilnError(.io, "\(what): \(detail)")
    }

    public func read(into buffer: UnsafeMutableRawBufferPointer, at offset: Int64) throws -> Int {
        guard offset >= 0, offset < size else { return 0 }
        let count = Int(min(Int64(buffer.count), size - offset))
        if count >= Self.chunk { return try direct(into: buffer, count: count, at: offset) }
        var done = 0
        while done < count {
            let position = offset + Int64(done)
            let start = position - position % Int64(Self.chunk)
            let data = try chunk(at: start)
            let within = Int(position - start)
            let n = min(count - done, data.count - within)
            guard n > 0 else { break }
            data.withUnsafeBytes { source in
                (buffer.baseAddress! + done).copyMemory(from: source.baseAddress! + within, byteCount: n)
            }
            done += n
        }
        return done
    }

    private func direct(into buffer: UnsafeMutableRawBufferPointer, count: Int, at offset: Int64) throws -> Int {
        guard nbd_pread(handle, buffer.baseAddress, count, UInt64(offset), 0) == 0 else {
            throw Self.failure("cannot read \(count) bytes at \(offset) of \(name)")
        }
        return count
    }

    private func chunk(at start: Int64) throws -> [UInt8] {
        if let hit = chunks[start] { return hit }
        var data = [UInt8](repeating: 0, count: Int(min(Int64(Self.chunk), size - start)))
        _ = try data.withUnsafeMutableBytes { try direct(into: $0, count: $0.count, at: start) }
        if chunks.count >= Self.maxChunks { chunks[order.removeFirst()] = nil }
        chunks[start] = data
        order.append(start)
        return data
    }
}
