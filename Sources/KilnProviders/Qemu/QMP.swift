import Foundation
import KilnCore

#if canImport(Glibc)
    import Glibc
#endif

/// A connection to QEMU's machine protocol (QMP): JSON objects, one per line, over a Unix
/// socket. Written here because no maintained Swift package speaks QMP, and kiln needs only a
/// handful of its commands (stop, cont, migrate and their queries, for warm snapshots).
/// Blocking: async callers go through ``blocking(_:)``.
final class QMPConnection {
    private let fd: Int32
    private var pending = Data()

    /// Connects to the socket QEMU listens on (`-qmp unix:PATH,server=on,wait=off`), waiting up
    /// to `timeout` for QEMU to create it, and enters command mode.
    init(path: String, timeout: Duration) throws {
        let deadline = ContinuousClock.now + timeout
        var connected: Int32 = -1
        while connected < 0 {
            connected = Self.connect(path)
            if connected < 0 {
                guard ContinuousClock.now < deadline else {
                    throw KilnError(.providerFailed, "QEMU's control socket did not answer within \(timeout.kilnDescription)")
                }
                usleep(20_000)
            }
        }
        fd = connected
        // No answer within 30 s means QEMU is stuck: a read fails rather than waiting forever.
        var limit = timeval(tv_sec: 30, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
        let greeting = try readObject()
        guard greeting["QMP"] != nil else { throw KilnError(.providerFailed, "QEMU's control socket did not greet as QMP") }
        try execute("qmp_capabilities")
    }

    deinit { close(fd) }

    /// Runs one command; returns its `return` value. Events that arrive first are skipped.
    @discardableResult
    func execute(_ command: String, _ arguments: [String: Any] = [:]) throws -> Any {
        var message: [String: Any] = ["execute": command]
        if !arguments.isEmpty { message["arguments"] = arguments }
        var data = try JSONSerialization.data(withJSONObject: message)
        data.append(UInt8(ascii: "\n"))
        try data.withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let written = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                guard written > 0 else { throw KilnError(.providerFailed, "QEMU's control socket closed") }
                offset += written
            }
        }
        while true {
            let answer = try readObject()
            if let value = answer["return"] { return value }
            if let error = answer["error"] as? [String: Any] {
                throw KilnError(.providerFailed, "QEMU refused \(command): \(error["desc"] as? String ?? "\(error)")")
            }
        }
    }

    /// The guest's run state (`running`, `paused`, `inmigrate`, `postmigrate`, ...).
    func status() throws -> String {
        (try execute("query-status") as? [String: Any])?["status"] as? String ?? "unknown"
    }

    /// A migration's state (`active`, `completed`, `failed`, ...) and QEMU's reason when it failed.
    func migration() throws -> (status: String, error: String?) {
        let info = try execute("query-migrate") as? [String: Any] ?? [:]
        return (info["status"] as? String ?? "none", info["error-desc"] as? String)
    }

    private func readObject() throws -> [String: Any] {
        while true {
            if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = pending[pending.startIndex..<newline]
                pending = Data(pending[pending.index(after: newline)...])
                if let object = try? JSONSerialization.jsonObject(with: line) as? [String: Any] { return object }
                continue
            }
            var buffer = [UInt8](repeating: 0, count: 4096)
            let count = recv(fd, &buffer, buffer.count, 0)
            guard count > 0 else { throw KilnError(.providerFailed, "QEMU's control socket closed or did not answer") }
            pending.append(contentsOf: buffer[0..<count])
        }
    }

    private static func connect(_ path: String) -> Int32 {
        let fd = socket(AF_UNIX, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return -1 }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let bytes = Array(path.utf8)
        guard bytes.count < MemoryLayout.size(ofValue: address.sun_path) else {
            close(fd)
            return -1
        }
        withUnsafeMutableBytes(of: &address.sun_path) { raw in
            for (index, byte) in bytes.enumerated() { raw[index] = byte }
        }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_un>.size)) == 0
            }
        }
        if connected { return fd }
        close(fd)
        return -1
    }
}
