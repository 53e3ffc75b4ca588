import CArchive
import Foundation
import KilnCore
import KilnModel
import KilnStore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

// How the fetcher reads a location: file paths and http(s) URLs, uncached.
extension AptIndexFetcher {

    enum Body {
        case data(Data)
        /// HTTP 404/410 or a missing file: the message says which.
        case missing(String)
    }

    // Ephemeral and uncached: a Release file served from a cache would hide new packages.
    private static let session: URLSession = {
        let configuration = URLSessionConfiguration.ephemeral
        configuration.urlCache = nil
        configuration.requestCachePolicy = .reloadIgnoringLocalCacheData
        configuration.timeoutIntervalForRequest = 60
        return URLSession(configuration: configuration)
    }()

    static func require(_ location: String) async throws -> Data {
        switch try await request(location) {
        case .data(let data): return data
        case .missing(let message): throw KilnError(.io, message)
        }
    }

    static func request(_ location: String) async throws -> Body {
        guard let url = URL(string: location), let scheme = url.scheme?.lowercased() else {
            throw KilnError(.invalidInput, "invalid repository URL \(location)")
        }
        if scheme == "file" {
            guard let data = FileManager.default.contents(atPath: url.path) else {
                return .missing("\(location): no such file")
            }
            return .data(data)
        }
        guard scheme == "http" || scheme == "https" else {
            throw KilnError(.invalidInput, "\(location): only http, https and file repositories are supported")
        }
        let data: Data
        let response: URLResponse
        do {
            (data, response) = try await session.data(from: url)
        } catch {
            if Task.isCancelled { throw KilnError(.cancelled, "fetching \(location) was cancelled") }
            throw KilnError(.io, "cannot reach \(location): \(error.localizedDescription)")
        }
        let status = (response as? HTTPURLResponse)?.statusCode ?? 200
        switch status {
        case 200: return .data(data)
        case 404, 410: return .missing("\(location): HTTP \(status)")
        default: throw KilnError(.io, "\(location): HTTP \(status)")
        }
    }
}
