import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// An exclusive `flock` on a file, across processes. The kernel drops it when its holder dies,
/// so a killed kiln never leaves a lock behind.
public final class FileLock: Sendable {
    private let fd: Int32

    private init(fd: Int32) { self.fd = fd }

    deinit { close(fd) }

    /// Takes the lock, polling while another holder has it (calling `waiting` once); cancellable.
    public static func acquire(_ path: String, waiting: @Sendable () -> Void = {}) async throws -> FileLock {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw KilnError(.io, "cannot open the lock \(path): \(String(cString: strerror(errno)))") }
        var told = false
        // Polled rather than a blocking flock: a blocked thread would hold one of the few threads
        // Swift's concurrency runs on, and a waiting build must stay cancellable.
        while flock(fd, LOCK_EX | LOCK_NB) != 0 {
            guard errno == EWOULDBLOCK else {
                close(fd)
                throw KilnError(.io, "cannot lock \(path): \(String(cString: strerror(errno)))")
            }
            if !told {
                waiting()
                told = true
            }
            do {
                try await Task.sleep(for: .milliseconds(200))
            } catch {
                close(fd)
                throw error
            }
        }
        return FileLock(fd: fd)
    }
}
