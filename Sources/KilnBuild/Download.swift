import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Downloads a URL into a file through FoundationNetworking (libcurl), writing as bytes arrive
/// into `<destination>.part` so an interrupted download resumes with a Range request.
///
/// `URLSession.download` is not used: it keeps partial data in a private temporary file that
/// is lost when the transfer fails, and a multi-GB disk image should not start over.
public final class Download: NSObject, URLSessionDataDelegate, @unchecked Sendable {
    private let destination: String
    private let part: String
    // Touched only from the session's serial delegate queue, then read after completion.
    private var handle: FileHandle?
    private var failure: (any Error)?
    private var continuation: CheckedContinuation<Void, any Error>?
    private(set) var resumedFrom: UInt64 = 0
    private let progress: ProgressMeter

    private init(destination: String, label: String) {
        self.destination = destination
        self.part = destination + ".part"
        self.progress = ProgressMeter("download \(label)", total: nil)
    }

    /// Fetches `url` to `destination` (atomically renamed into place when complete).
    /// - Returns: the number of bytes that were already on disk from an earlier attempt.
    @discardableResult
    public static func fetch(_ url: URL, to destination: String) async throws -> UInt64 {
        let download = Download(destination: destination, label: url.lastPathComponent)
        defer { download.progress.finish() }
        try await download.run(url)
        return download.resumedFrom
    }

    private func run(_ url: URL) async throws {
        let existing = (try? FileManager.default.attributesOfItem(atPath: part)[.size] as? UInt64) ?? 0
        if !FileManager.default.fileExists(atPath: part) {
            FileManager.default.createFile(atPath: part, contents: nil)
        }
        let request = {
            var request = URLRequest(url: url)
            if existing > 0 { request.setValue("bytes=\(existing)-", forHTTPHeaderField: "Range") }
            return request
        }()
        let queue = OperationQueue()
        queue.maxConcurrentOperationCount = 1
        let session = URLSession(configuration: .ephemeral, delegate: self, delegateQueue: queue)
        defer { session.finishTasksAndInvalidate() }
        try await withTaskCancellationHandler {
            try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                queue.addOperation {
                    self.continuation = continuation
                    self.resumedFrom = existing
                    session.dataTask(with: request).resume()
                }
            }
        } onCancel: {
            session.invalidateAndCancel()
        }
        try FileManager.default.moveItem(atPath: part, toPath: destination)
    }

    public func urlSession(
        _ session: URLSession, dataTask: URLSessionDataTask, didReceive response: URLResponse,
        completionHandler: @escaping (URLSession.ResponseDisposition) -> Void
    ) {
        let status = (response as? HTTPURLResponse)?.statusCode ?? 200
        do {
            let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: part))
            switch status {
            case 206:
                try handle.seekToEnd()
            case 200..<300:
                // The server ignored the Range header: start over.
                try handle.truncate(atOffset: 0)
                resumedFrom = 0
            default:
                throw KilnError(.buildFailed, "\(response.url?.absoluteString ?? "download"): HTTP \(status)")
            }
            self.handle = handle
            let length = response.expectedContentLength
            progress.setTotal(length >= 0 ? length + Int64(resumedFrom) : nil)
            progress.set(done: Int64(resumedFrom))
            completionHandler(.allow)
        } catch {
            failure = error
            completionHandler(.cancel)
        }
    }

    public func urlSession(_ session: URLSession, dataTask: URLSessionDataTask, didReceive data: Data) {
        do {
            try handle?.write(contentsOf: data)
            progress.advance(by: Int64(data.count))
        } catch {
            failure = error
            dataTask.cancel()
        }
    }

    public func urlSession(_ session: URLSession, task: URLSessionTask, didCompleteWithError error: (any Error)?) {
        try? handle?.synchronize()
        try? handle?.close()
        handle = nil
        if let failure = failure ?? error {
            let wrapped =
                failure as? KilnError
                ?? KilnError(
                    .buildFailed, "downloading \(task.originalRequest?.url?.absoluteString ?? ""): \(failure.localizedDescription)")
            continuation?.resume(throwing: wrapped)
        } else {
            continuation?.resume()
        }
        continuation = nil
    }
}
