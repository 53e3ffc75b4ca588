import Foundation
import KilnCore
import KilnModel

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
        do {
            try await LockWait.poll(waiting: waiting) {
                if flock(fd, LOCK_EX | LOCK_NB) == 0 { return true }
                guard errno == EWOULDBLOCK else { throw KilnError(.io, "cannot lock \(path): \(String(cString: strerror(errno)))") }
                return false
            }
        } catch {
            close(fd)
            throw error
        }
        return FileLock(fd: fd)
    }

    /// The lock if nobody holds it now; nil when someone does (or the file cannot be opened).
    public static func tryAcquire(_ path: String) -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else { return nil }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            close(fd)
            return nil
        }
        return FileLock(fd: fd)
    }
}

/// How kiln waits for a lock another process holds (a file lock, a PostgreSQL advisory lock).
enum LockWait {
    /// Tries `attempt` until it takes the lock, every 200 ms, calling `waiting` once when the
    /// wait has lasted `notice`. Polled rather than blocking: a blocked thread would hold one of
    /// the few threads Swift's concurrency runs on, and a waiting build must stay cancellable.
    /// The notice waits a moment because a lock can look held for an instant after its holder
    /// let it go (a child process forked before the holder closed it has not yet exec-ed).
    static func poll(waiting: () -> Void, notice: Duration = .seconds(1), _ attempt: () throws -> Bool) async throws {
        var told = false
        let started = ContinuousClock.now
        while try !attempt() {
            if !told, ContinuousClock.now - started >= notice {
                waiting()
                told = true
            }
            try await Task.sleep(for: .milliseconds(200))
        }
    }
}
