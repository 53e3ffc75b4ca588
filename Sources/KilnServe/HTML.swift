import Foundation
import Hummingbird
import KilnCore

enum HTML {
    static let type = "text/html; charset=utf-8"

    /// For text kiln writes into markup itself (the lineage SVG, log lines). By Unicode scalar,
    /// not by Character: a `<` joined to a prepended or combining mark is one Character that
    /// is not equal to "<", and a Character-wise escape lets it through (the hostile review
    /// made a `<meta http-equiv=refresh>` that way).
    static func escape(_ text: String) -> String {
        var out = String.UnicodeScalarView()
        for scalar in text.unicodeScalars {
            switch scalar {
            case "<": out.append(contentsOf: "&lt;".unicodeScalars)
            case ">": out.append(contentsOf: "&gt;".unicodeScalars)
            case "&": out.append(contentsOf: "&amp;".unicodeScalars)
            case "\"": out.append(contentsOf: "&quot;".unicodeScalars)
            case "'": out.append(contentsOf: "&#39;".unicodeScalars)
            default: out.append(scalar)
            }
        }
        return String(out)
    }

    /// A value made safe for Mustache's own escaping, which compares whole Characters: a markup
    /// character that is part of a larger Character (joined to a prepended or combining mark)
    /// becomes U+FFFD, so every `<`, `>`, `&`, `"` and `'` left is a Character of its own and
    /// is escaped.
    static func defused(_ text: String) -> String {
        guard text.unicodeScalars.contains(where: isMarkup) else { return text }
        var out = ""
        for character in text {
            if character.unicodeScalars.count > 1, character.unicodeScalars.contains(where: isMarkup) {
                out.append("\u{FFFD}")
            } else {
                out.append(character)
            }
        }
        return out
    }

    static func isMarkup(_ scalar: Unicode.Scalar) -> Bool {
        scalar == "<" || scalar == ">" || scalar == "&" || scalar == "\"" || scalar == "'"
    }

    /// Every text answer is made here (pages, JSON, logs, errors; cached ones in
    /// ``KilnServer/cached(_:_:type:_:)``), so kiln's own credentials are redacted in one place.
    static func response(_ body: String, status: HTTPResponse.Status = .ok, type: String = HTML.type) -> Response {
        Response(
            status: status, headers: [.contentType: type, .cacheControl: "no-store"],
            body: .init(byteBuffer: ByteBuffer(string: Secrets.redact(body))))
    }
}

enum Path {
    /// A catalog name as one path segment. Image, family and build names are `[a-z0-9.-]`, so
    /// this is the name itself; anything else is percent-encoded rather than trusted.
    static func segment(_ name: String) -> String {
        name.addingPercentEncoding(withAllowedCharacters: .alphanumerics.union(CharacterSet(charactersIn: "-._~"))) ?? name
    }
}

/// An error as the server answers it: a status and a message, as JSON under /api/ and as a
/// page elsewhere. Bad input is 400 and unknown names 404, with what was wrong; a 500 is a bug.
struct Problem: Error {
    var status: HTTPResponse.Status
    var message: String

    init(status: HTTPResponse.Status, message: String) { (self.status, self.message) = (status, message) }

    init(_ error: any Error) {
        if let problem = error as? Problem {
            self = problem
        } else if let error = error as? KilnError {
            let status: HTTPResponse.Status =
                switch error.code {
                case .invalidInput: .badRequest
                case .notFound: .notFound
                default: .internalServerError
                }
            self.init(status: status, message: error.description)
        } else if let error = error as? any HTTPResponseError {
            self.init(status: error.status, message: "\(error.status.reasonPhrase.lowercased())")
        } else {
            self.init(status: .internalServerError, message: "\(error)")
        }
    }

    func response(html: Bool, signIn: Bool = false) -> Response {
        if !html {
            let body = (try? JSON.encode(APIError(error: .init(status: status.code, message: message)))) ?? Data()
            return HTML.response(String(decoding: body, as: UTF8.self), status: status, type: "application/json")
        }
        let page = Pages.render(
            "error", ["title": "\(status.code) \(status.reasonPhrase)", "message": message, "signIn": signIn, "status": status.code])
        return HTML.response(page, status: status)
    }
}

/// Turns every error a handler throws into a ``Problem`` answer, so nothing reaches the client
/// as Hummingbird's default text, and an unknown path is a 404 page or JSON like any other.
struct ProblemAnswers<Context: RequestContext>: RouterMiddleware {
    let redactor: Redactor

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        let api = request.uri.path.hasPrefix("/api/")
        do {
            return try await next(request, context)
        } catch {
            var problem = Problem(error)
            problem.message = redactor(problem.message)
            return problem.response(html: !api)
        }
    }
}

enum JSON {
    static func encode(_ value: some Encodable) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        encoder.dateEncodingStrategy = .iso8601
        return try encoder.encode(value)
    }

    static func response(_ value: some Encodable) throws -> Response {
        HTML.response(String(decoding: try encode(value), as: UTF8.self), type: "application/json")
    }
}
