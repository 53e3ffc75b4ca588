import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// What survives a `kill -9` of kiln: the children it started (QEMU, ssh, mmdebstrap), written
/// down as they start, so that the next kiln to open the same store can end them.
///
/// Every kiln process holds an exclusive `flock` on `run/<pid>.lock` in each store it opened for
/// as long as it lives; the kernel drops that lock when the process dies, however it dies. A
/// lock that can be taken therefore names a dead kiln, and `run/<pid>.children` lists its
/// children as `PID STARTTIME` lines (the start time from /proc tells a child from a later
/// process that reused its pid). Each child leads its own session (``ProcessRunner``), so the
/// whole group is killed.
public final class ProcessRegistry: Sendable {
    public static let shared = ProcessRegistry()

    /// This machine's name: process ids mean something only on the machine that owns them, and
    /// a store or catalog may be shared between machines (docs/ci.md).
    public static let hostName: String = {
        var buffer = [CChar](repeating: 0, count: 256)
        guard gethostname(&buffer, buffer.count) == 0 else { return "localhost" }
        let name = String(decoding: buffer.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        return name.isEmpty ? "localhost" : name
    }()

    private struct Attached {
        let lockFD: Int32
        let childrenFD: Int32
        /// Stores open on this directory in this process (tests open many).
        var users: Int
    }

    private let attached = Locked<[String: Attached]>([:])

    /// Starts recording this process's children in `directory`; one ``detach(directory:)`` per call.
    public func attach(directory: String) throws {
        try attached.withLock { (attached: inout [String: Attached]) throws(KilnError) in
            if attached[directory] != nil {
                attached[directory]!.users += 1
                return
            }
            do {
                // Private to kiln's user: what is recorded here decides what a later kiln kills.
                try FileManager.default.createDirectory(
                    atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            } catch {
                throw KilnError(.io, "cannot create \(directory)", cause: error as NSError)
            }
            let pid = getpid()
            let lockFD = open(directory + "/\(pid).lock", O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
            guard lockFD >= 0 else { throw KilnError(.io, "cannot create \(directory)/\(pid).lock: \(Self.errnoText)") }
            guard flock(lockFD, LOCK_EX | LOCK_NB) == 0 else {
                close(lockFD)
                throw KilnError(.io, "cannot lock \(directory)/\(pid).lock: \(Self.errnoText)")
            }
            // A file left by an earlier process with this pid belongs to that one: start afresh.
            let childrenFD = open(directory + "/\(pid).children", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0o644)
            guard childrenFD >= 0 else {
                close(lockFD)
                throw KilnError(.io, "cannot create \(directory)/\(pid).children: \(Self.errnoText)")
            }
            attached[directory] = Attached(lockFD: lockFD, childrenFD: childrenFD, users: 1)
        }
    }

    /// Stops recording in `directory` once its last user is gone; the files go with it.
    public func detach(directory: String) {
        attached.withLock { attached in
            guard var entry = attached[directory] else { return }
            entry.users -= 1
            guard entry.users == 0 else {
                attached[directory] = entry
                return
            }
            attached[directory] = nil
            let pid = getpid()
            unlink(directory + "/\(pid).children")
            unlink(directory + "/\(pid).lock")
            close(entry.childrenFD)
            close(entry.lockFD)
        }
    }

    /// Records a child that was just started (``ProcessRunner`` calls this for every child).
    public func started(pid: Int32) {
        guard let start = Self.startTime(of: pid) else { return }
        let line = Array("\(pid) \(start)\n".utf8)
        attached.withLock { attached in
            // One write(2) on an O_APPEND descriptor: lines from concurrent children never interleave.
            for entry in attached.values { _ = line.withUnsafeBytes { write(entry.childrenFD, $0.baseAddress, $0.count) } }
        }
    }

    /// True while the kiln process `pid` holds its lock in `directory`.
    public func isAlive(owner pid: Int32, directory: String) -> Bool {
        if pid == getpid() { return true }
        let fd = open(directory + "/\(pid).lock", O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        if flock(fd, LOCK_EX | LOCK_NB) == 0 {
            flock(fd, LOCK_UN)
            return false
        }
        return true
    }

    /// A kiln process found dead, and the children of it that were still running and are now killed.
    public struct Reaped: Sendable, Equatable {
        public let owner: Int32
        public let killed: [Int32]
    }

    /// Kills the surviving children of every dead kiln process recorded in `directory` and
    /// removes its files. Safe to call at any time from any kiln: live owners are left alone.
    public func reap(directory: String) -> [Reaped] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
        var reaped: [Reaped] = []
        for name in names where name.hasSuffix(".lock") {
            guard let owner = Int32(name.dropLast(5)), owner != getpid() else { continue }
            let lockPath = directory + "/" + name
            let fd = open(lockPath, O_RDWR | O_CLOEXEC)
            guard fd >= 0 else { continue }
            defer { close(fd) }
            // Held: its kiln is alive. Taken: it is dead, and no other reaper works on it now.
            guard flock(fd, LOCK_EX | LOCK_NB) == 0 else { continue }
            let childrenPath = directory + "/\(owner).children"
            // Only a record kiln's own user wrote, that no one else could have changed, names
            // processes to signal: a forged file must not make kiln kill an arbitrary process.
            guard PrivatePath.isOwn(lockPath),
                !FileManager.default.fileExists(atPath: childrenPath) || PrivatePath.isOwn(childrenPath)
            else { continue }
            var alive: [(pid: Int32, start: UInt64)] = []
            let text = (try? String(contentsOfFile: childrenPath, encoding: .utf8)) ?? ""
            for line in text.split(separator: "\n") {
                let fields = line.split(separator: " ")
                guard fields.count == 2, let pid = Int32(fields[0]), let start = UInt64(fields[1]), pid > 1 else { continue }
                // And the process is still the one recorded (its start time) and runs as kiln's user.
                if Self.startTime(of: pid) == start, Self.owner(of: pid) == geteuid() { alive.append((pid, start)) }
            }
            Self.terminate(alive)
            let killed = alive.map(\.pid)
            unlink(childrenPath)
            unlink(lockPath)
            reaped.append(Reaped(owner: owner, killed: killed))
        }
        return reaped
    }

    /// The user a process runs as (its real uid, from /proc).
    static func owner(of pid: Int32) -> uid_t? {
        var info = stat()
        guard stat("/proc/\(pid)", &info) == 0 else { return nil }
        return info.st_uid
    }

    /// SIGTERM to each child's process group (it leads one: its helpers go with it), then
    /// SIGKILL to what is left after `grace`. TERM first because mmdebstrap unmounts its
    /// chroot's /proc, /sys and /dev on TERM, and would leave them mounted if killed outright.
    static func terminate(_ processes: [(pid: Int32, start: UInt64)], grace: Duration = .seconds(10)) {
        for process in processes {
            kill(-process.pid, SIGTERM)
            kill(process.pid, SIGTERM)
        }
        let deadline = ContinuousClock.now + grace
        var left = processes
        while !left.isEmpty && ContinuousClock.now < deadline {
            left = left.filter { Self.startTime(of: $0.pid) == $0.start && !Self.isZombie($0.pid) }
            if !left.isEmpty { usleep(100_000) }
        }
        for process in left {
            kill(-process.pid, SIGKILL)
            kill(process.pid, SIGKILL)
        }
    }

    /// An exited child nobody has waited for yet (its parent, a killed kiln, is gone).
    static func isZombie(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8), let close = stat.lastIndex(of: ")") else {
            return false
        }
        return stat[stat.index(after: close)...].split(separator: " ").first == "Z"
    }

    /// Field 22 of /proc/PID/stat: when the process started, in clock ticks since boot.
    static func startTime(of pid: Int32) -> UInt64? {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8),
            let close = stat.lastIndex(of: ")")
        else { return nil }
        // Fields after the command name (which may hold spaces) start at field 3.
        let fields = stat[stat.index(after: close)...].split(separator: " ")
        guard fields.count > 19 else { return nil }
        return UInt64(fields[19])
    }

    private static var errnoText: String { String(cString: strerror(errno)) }
}
