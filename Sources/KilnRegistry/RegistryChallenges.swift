import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// The URLSession task of one exchange, kept so a cancelled Swift task can cancel it.
struct TaskBox: @unchecked Sendable {
    var task: URLSessionTask?
    var cancelled = false
}

/// Declines the challenges FoundationNetworking raises for `Basic` 401s (it would otherwise wait
/// for credentials forever) and keeps the 401 for the request to answer itself.
final class ChallengeCatcher: NSObject, URLSessionTaskDelegate, Sendable {
    struct Declined: Sendable {
        let status: Int
        let headers: [String: String]
    }
    private let declined = Locked<[Int: Declined]>([:])

    /// Redirects keep kiln's credentials at the registry: a redirect to another origin (scheme,
    /// host or port) loses its `Authorization`, and one from https to http is not followed (the
    /// 3xx comes back to kiln, which reports it).
    func urlSession(
        _ session: URLSession, task: URLSessionTask, willPerformHTTPRedirection response: HTTPURLResponse,
        newRequest request: URLRequest, completionHandler: @escaping @Sendable (URLRequest?) -> Void
    ) {
        completionHandler(Self.redirect(from: task.currentRequest?.url ?? task.originalRequest?.url, to: request))
    }

    static func redirect(from previous: URL?, to next: URLRequest) -> URLRequest? {
        guard let previous, let target = next.url else { return nil }
        if previous.scheme?.lowercased() == "https" && target.scheme?.lowercased() != "https" { return nil }
        var next = next
        if !Origin.same(previous, target) { next.setValue(nil, forHTTPHeaderField: "Authorization") }
        return next
    }

    func take(_ taskIdentifier: Int) -> Declined? {
        declined.withLock { $0.removeValue(forKey: taskIdentifier) }
    }

    func urlSession(
        _ session: URLSession, task: URLSessionTask, didReceive challenge: URLAuthenticationChallenge,
        completionHandler: @escaping @Sendable (URLSession.AuthChallengeDisposition, URLCredential?) -> Void
    ) {
        if let response = challenge.failureResponse as? HTTPURLResponse {
            var fields: [String: String] = [:]
            for (name, value) in response.allHeaderFields {
                if let name = name as? String, let value = value as? String { fields[name.lowercased()] = value }
            }
            let entry = Declined(status: response.statusCode, headers: fields)
            declined.withLock { $0[task.taskIdentifier] = entry }
        }
        completionHandler(.cancelAuthenticationChallenge, nil)
    }
}

/// One challenge of a `WWW-Authenticate` header (RFC 7235): a scheme and its auth-params.
struct WWWAuthenticate: Sendable, Equatable {
    /// Lowercased.
    var scheme: String
    /// Names lowercased; quoted values unquoted.
    var parameters: [String: String]
    var raw: String

    /// All challenges of a header value; commas separate both parameters and challenges, and
    /// may appear inside quoted values (`scope="repository:a:pull,push"`).
    static func parse(_ header: String) -> [WWWAuthenticate] {
        var challenges: [WWWAuthenticate] = []
        let characters = Array(header)
        var index = 0
        func skip(_ set: Set<Character>) { while index < characters.count && set.contains(characters[index]) { index += 1 } }
        func token() -> String {
            let start = index
            while index < characters.count && !" \t,=\"".contains(characters[index]) { index += 1 }
            return String(characters[start..<index])
        }
        while index < characters.count {
            skip([" ", "\t", ","])
            let start = index
            let word = token()
            if word.isEmpty {
                index += 1
                continue
            }
            skip([" ", "\t"])
            if index < characters.count && characters[index] == "=" && !challenges.isEmpty {
                // auth-param of the current challenge.
                index += 1
                skip([" ", "\t"])
                var value = ""
                if index < characters.count && characters[index] == "\"" {
                    index += 1
                    while index < characters.count && characters[index] != "\"" {
                        if characters[index] == "\\" && index + 1 < characters.count { index += 1 }
                        value.append(characters[index])
                        index += 1
                    }
                    index += 1
                } else {
                    value = token()
                }
                challenges[challenges.count - 1].parameters[word.lowercased()] = value
                challenges[challenges.count - 1].raw += String(characters[start..<min(index, characters.count)])
            } else {
                challenges.append(WWWAuthenticate(scheme: word.lowercased(), parameters: [:], raw: word + " "))
            }
        }
        return challenges
    }
}

/// An URL's origin (RFC 6454): scheme, host and port, the port defaulted by the scheme.
enum Origin {
    static func same(_ a: URL, _ b: URL) -> Bool { key(a) == key(b) }

    static func key(_ url: URL) -> String {
        let scheme = url.scheme?.lowercased() ?? ""
        let port = url.port ?? (scheme == "https" ? 443 : 80)
        return "\(scheme)://\(url.host?.lowercased() ?? ""):\(port)"
    }
}
