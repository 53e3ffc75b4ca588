import Foundation
import Hummingbird
import KilnCore
import KilnModel

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
    /// A comment line this often keeps proxies from closing a quiet stream.
    static let keepAlive = Duration.seconds(15)

    func response() -> Response {
        var headers = HTTPFields()
        headers[.contentType] = "text/event-stream"
        headers[.cacheControl] = "no-store"
        return Response(status: .ok, headers: headers, body: ResponseBody { writer in try await self.stream(&writer) })
    }

    private func stream(_ writer: inout any ResponseBodyWriter) async throws {
        // nil for a build id that is not a plain name: nothing is read, the stream only ends.
        let path = browser.liveLogPath(of: build)
        var offset: UInt64 = 0
        var skip = fromLine
        var pending = Data()
        var quiet = ContinuousClock.now
        var status = build.status
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
            // `end`: lines written just before the build ended are not lost.
            status = (try? browser.catalog.build(id: build.id)?.status) ?? .failed
        }
    }
}
