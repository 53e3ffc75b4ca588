import Crypto
import Foundation
import KilnCore

/// An HTTP request as AWS Signature Version 4 sees it: what is signed, and nothing URLSession adds later.
public struct SignableRequest: Sendable, Equatable {
    public var method: String
    public var url: URL
    /// Names in any case; a `Host` header is signed as given, else made from the URL.
    public var headers: [String: String]
    public var body: Data

    public init(method: String, url: URL, headers: [String: String] = [:], body: Data = Data()) {
        (self.method, self.url, self.headers, self.body) = (method, url, headers, body)
    }
}

/// AWS Signature Version 4 (header form), written here because there is no AWS SDK for Swift
/// that kiln can build with on Linux; it is checked against the published SigV4 test suite.
///
/// Every header of the request is signed: send only what must reach AWS unchanged, and let the
/// transport add `User-Agent`, `Content-Length` and the like after signing.
public struct SigV4Signer: Sendable {
    public var credentials: AWSCredentials
    public var region: String
    public var service: String

    public init(credentials: AWSCredentials, region: String, service: String) {
        (self.credentials, self.region, self.service) = (credentials, region, service)
    }

    /// The request with `X-Amz-Date`, `X-Amz-Security-Token` (temporary credentials only) and
    /// `Authorization` set for `date`.
    public func sign(_ request: SignableRequest, at date: Date) -> SignableRequest {
        let timestamp = Self.timestamp(date)
        let day = String(timestamp.prefix(8))
        var signed = request
        // Set by the signer, whatever the caller gave: these must agree with the signature.
        signed.headers = request.headers.filter {
            !["authorization", "x-amz-date", "x-amz-security-token"].contains($0.key.lowercased())
        }
        signed.headers["X-Amz-Date"] = timestamp
        if let token = credentials.sessionToken { signed.headers["X-Amz-Security-Token"] = token }
        let (canonical, signedHeaders) = Self.canonicalRequest(signed)
        let scope = "\(day)/\(region)/\(service)/aws4_request"
        let stringToSign = ["AWS4-HMAC-SHA256", timestamp, scope, Hashing.sha256Hex(canonical)].joined(separator: "\n")
        let mac = HMAC<SHA256>.authenticationCode(for: Data(stringToSign.utf8), using: signingKey(day: day))
        let signature = mac.map { String(format: "%02x", $0) }.joined()
        signed.headers["Authorization"] =
            "AWS4-HMAC-SHA256 Credential=\(credentials.accessKeyID)/\(scope), SignedHeaders=\(signedHeaders), Signature=\(signature)"
        return signed
    }

    func signingKey(day: String) -> SymmetricKey {
        var key = SymmetricKey(data: Data(("AWS4" + credentials.secretAccessKey).utf8))
        for part in [day, region, service, "aws4_request"] {
            key = SymmetricKey(data: Data(HMAC<SHA256>.authenticationCode(for: Data(part.utf8), using: key)))
        }
        return key
    }

    /// The canonical request and its signed-header list (`host;x-amz-date`).
    static func canonicalRequest(_ request: SignableRequest) -> (text: String, signedHeaders: String) {
        var headers: [String: [String]] = [:]
        for (name, value) in request.headers {
            headers[name.lowercased(), default: []].append(canonicalHeaderValue(value))
        }
        if headers["host"] == nil { headers["host"] = [hostHeader(request.url)] }
        let names = headers.keys.sorted()
        // A name given twice (in different cases) is one header whose values join with commas.
        let headerLines = names.map { "\($0):\(headers[$0]!.joined(separator: ","))\n" }.joined()
        let signedHeaders = names.joined(separator: ";")
        let text = [
            request.method.uppercased(), canonicalPath(request.url), canonicalQuery(request.url), headerLines,
            signedHeaders, Hashing.sha256Hex(request.body),
        ].joined(separator: "\n")
        return (text, signedHeaders)
    }

    /// The path's segments, decoded and encoded again: the Query API only ever posts to `/`, so
    /// S3's different rule for keys never applies here.
    static func canonicalPath(_ url: URL) -> String {
        let path = URLComponents(url: url, resolvingAgainstBaseURL: true)?.path ?? "/"
        guard !path.isEmpty else { return "/" }
        return path.split(separator: "/", omittingEmptySubsequences: false).map { uriEncode(String($0)) }.joined(
            separator: "/")
    }

    /// Parameters sorted by encoded name, then value, each encoded as the specification wants.
    static func canonicalQuery(_ url: URL) -> String {
        guard let query = URLComponents(url: url, resolvingAgainstBaseURL: true)?.percentEncodedQuery, !query.isEmpty
        else { return "" }
        let pairs = query.split(separator: "&").map { item -> (String, String) in
            let parts = item.split(separator: "=", maxSplits: 1, omittingEmptySubsequences: false)
            let decode = { (text: Substring) in text.removingPercentEncoding ?? String(text) }
            return (uriEncode(decode(parts[0])), parts.count > 1 ? uriEncode(decode(parts[1])) : "")
        }
        return pairs.sorted { $0.0 != $1.0 ? $0.0 < $1.0 : $0.1 < $1.1 }.map { "\($0.0)=\($0.1)" }.joined(separator: "&")
    }

    /// `host` or `host:port` when the port is not the scheme's own, as URLSession sends it.
    static func hostHeader(_ url: URL) -> String {
        let host = url.host ?? ""
        guard let port = url.port else { return host }
        let standard = url.scheme?.lowercased() == "https" ? 443 : 80
        return port == standard ? host : "\(host):\(port)"
    }

    /// Trimmed, with runs of spaces inside made one (the specification's `Trimall`).
    static func canonicalHeaderValue(_ value: String) -> String {
        value.split(separator: " ", omittingEmptySubsequences: true).joined(separator: " ")
            .trimmingCharacters(in: .whitespaces)
    }

    /// RFC 3986 percent-encoding of everything but the unreserved characters, uppercase hex:
    /// Foundation's own sets leave `+`, `=` or `/` alone, which AWS counts differently.
    public static func uriEncode(_ text: String) -> String {
        var out = ""
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "A")...UInt8(ascii: "Z"), UInt8(ascii: "a")...UInt8(ascii: "z"),
                UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "-"), UInt8(ascii: "_"), UInt8(ascii: "."),
                UInt8(ascii: "~"):
                out.append(Character(Unicode.Scalar(byte)))
            default:
                out += String(format: "%%%02X", byte)
            }
        }
        return out
    }

    /// `20150830T123600Z`, always UTC.
    static func timestamp(_ date: Date) -> String {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        let parts = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(
            format: "%04d%02d%02dT%02d%02d%02dZ", parts.year!, parts.month!, parts.day!, parts.hour!, parts.minute!,
            parts.second!)
    }
}
