import Foundation
import Hummingbird
import KilnCore
import KilnModel
import Synchronization

/// The live tail of a running build as server-sent events: `line` events with each new line of
/// its log (already redacted when written, and again here), then one `end` event with the
/// build's final status. The log is the build's scratch file on this machine; it is polled,
/// since a build and a server are different processes and the file is all they share.
struct LogTail: Sendable {
    let browser: Browser
    let build: BuildRecord
    /// Lines the page already shows.
    let fromLine: Int

    static let poll = Duration.milliseconds(250)
    /// A comment line this often keeps proxies from closing a quiet stream, and finds a
    /// client that left (a write fails) so its slot (``StreamSlots``) is freed within seconds.
    static let keepAlive = Duration.seconds(2)

    /// Seconds a client refused for want of a slot is told to wait.
    static let retryAfter = 5

    /// The stream, holding one of `slots`; with every slot taken, 503 and `Retry-After`.
    func response(slots: StreamSlots) -> Response {
        guard let slot = slots.take() else {
            var refused = Problem(
                status: .serviceUnavailable,
                message: "\(slots.limit) live tails are open already (kiln serve --max-streams); try again shortly, or reload the page"
            ).response(html: false)
            refused.headers[.retryAfter] = String(Self.retryAfter)
            return refused
        }
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(
            status: .ok, headers: headers,
            body: ResponseBody { writer in
                // The slot is released when the body is done, or dropped unwritten (a HEAD).
                defer { withExtendedLifetime(slot) {} }
                try await self.stream(&writer)
            })
    }

    private func stream(_ writer: inout any ResponseBodyWriter) async throws {
        // nil for a build id that is not a plain name: nothing is read, the stream only ends.
        let path = browser.liveLogPath(of: build)
        var offset: UInt64 = 0
        var skip = fromLine
        var pending = Data()
        var quiet = ContinuousClock.now
        var status = build.status
        var seen = browser.catalog.changeToken
        while true {
            // Read what was appended since the last look, and send each whole line.
            if let path, let handle = FileHandle(forReadingAtPath: path) {
                defer { try? handle.close() }
                try handle.seek(toOffset: offset)
                let data = handle.readData(ofLength: 1 << 20)
                offset += UInt64(data.count)
                pending.append(data)
            }
            var events = ""
            while let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                let line = String(decoding: pending[pending.startIndex..<newline], as: UTF8.self)
                pending.removeSubrange(pending.startIndex...newline)
                if skip > 0 {
                    skip -= 1
                    continue
                }
                // A carriage return would end the `data:` field early, and what follows it could
                // pose as a field of its own (`event: end`): the event gets none.
                events += "event: line\ndata: \(Secrets.redact(line).replacingOccurrences(of: "\r", with: ""))\n\n"
            }
            if !events.isEmpty {
                try await writer.write(ByteBuffer(string: events))
                quiet = .now
            } else if ContinuousClock.now - quiet > Self.keepAlive {
                try await writer.write(ByteBuffer(string: ": still running\n\n"))
                quiet = .now
            }
            if status != .running {
                try await writer.write(ByteBuffer(string: "event: end\ndata: \(status.rawValue)\n\n"))
                try await writer.finish(nil)
                return
            }
            try await Task.sleep(for: Self.poll)
            // Read the status after sleeping and send the rest of the file once more before
            // `end`: lines written just before the build ended are not lost. Only when the
            // catalog may have changed: many tails must not become a query each every 250 ms.
            let token = browser.catalog.changeToken
            if token == nil || token != seen {
                seen = token
                status = (try? browser.catalog.build(id: build.id)?.status) ?? .failed
            }
        }
    }
}

/// How many live tails may be open at once. Each one polls its log file and the catalog; the
/// review's 3,000 open streams slowed every other answer to a second, so past the limit a new
/// one is refused (503) rather than everyone slowed.
final class StreamSlots: Sendable {
    let limit: Int
    private let open = Atomic<Int>(0)

    init(limit: Int) { self.limit = limit }

    /// A slot, released when the returned value is freed; nil when all are taken.
    func take() -> Slot? {
        while true {
            let now = open.load(ordering: .relaxed)
            guard now < limit else { return nil }
            if open.compareExchange(expected: now, desired: now + 1, ordering: .relaxed).exchanged { return Slot(self) }
        }
    }

    final class Slot: Sendable {
        let slots: StreamSlots
        init(_ slots: StreamSlots) { self.slots = slots }
        deinit { slots.open.subtract(1, ordering: .relaxed) }
    }
}
