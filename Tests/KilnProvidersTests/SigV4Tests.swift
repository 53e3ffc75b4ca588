import Foundation
import KilnCore
import KilnModel
import Testing

@testable import KilnProviders

/// Requests and signatures of AWS's Signature Version 4 test suite (the aws4_testsuite that the
/// AWS SDKs check themselves against): all signed by AKIDEXAMPLE for region us-east-1, service
/// `service`, at 20150830T123600Z.
@Suite("SigV4 signing against AWS's published test suite")
struct SigV4Tests {
    static let credentials = AWSCredentials(
        accessKeyID: "AKIDEXAMPLE", secretAccessKey: "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
    /// 2015-08-30T12:36:00Z
    static let date = Date(timeIntervalSince1970: 1_440_938_160)
    static let scope = "AKIDEXAMPLE/20150830/us-east-1/service/aws4_request"
    static let sessionToken =
        "AQoDYXdzEPT//////////wEXAMPLEtc764bNrC9SAPBSM22wDOk4x4HIZ8j4FZTwdQWLWsKWHGBuFqwAeMicRXmxfpSPfIeoIYRqTflfKD8YUuwthAx7mSEI/qkPpKPi/kMcGdQrmGdeehM4IC1NtBmUpp2wUE8phUZampKsburEDy0KPkyQDYwT7WZ0wq5VSXDvp75YU9HFvlRd8Tx6q6fE8YQcHNVXAkiY9q6d+xo0rKwT38xVqr7ZD0u0iPPkUL64lIZbqBAz+scqKmlzm8FDrypNC9Yjc8fPOLn9FX9KSYvKTr4rvx3iSIlTJabIQwj2ICCR/oLxBA=="

    struct Vector: Sendable, CustomTestStringConvertible {
        var name: String
        var method: String
        var url: String
        var headers: [String: String] = [:]
        var body: String = ""
        var signedHeaders: String
        var signature: String
        var testDescription: String { name }
    }

    static let vectors: [Vector] = [
        Vector(
            name: "get-vanilla", method: "GET", url: "https://example.amazonaws.com/", signedHeaders: "host;x-amz-date",
            signature: "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31"),
        Vector(
            name: "get-vanilla-query-order-key-case", method: "GET",
            url: "https://example.amazonaws.com/?Param2=value2&Param1=value1", signedHeaders: "host;x-amz-date",
            signature: "b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500"),
        Vector(
            name: "get-vanilla-query-unreserved", method: "GET",
            url:
                "https://example.amazonaws.com/?-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz=-._~0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
            signedHeaders: "host;x-amz-date", signature: "9c3e54bfcdf0b19771a7f523ee5669cdf59bc7cc0884027167c21bb143a40197"),
        Vector(
            name: "get-vanilla-utf8-query", method: "GET", url: "https://example.amazonaws.com/?%E1%88%B4=bar",
            signedHeaders: "host;x-amz-date", signature: "2cdec8eed098649ff3a119c94853b13c643bcf08f8b0a1d91e12c9027818dd04"),
        Vector(
            name: "get-utf8", method: "GET", url: "https://example.amazonaws.com/%E1%88%B4", signedHeaders: "host;x-amz-date",
            signature: "8318018e0b0f223aa2bbf98705b62bb787dc9c0e678f255a891fd03141be5d85"),
        Vector(
            name: "get-header-value-trim", method: "GET", url: "https://example.amazonaws.com/",
            headers: ["My-Header1": " value1", "My-Header2": " \"a   b   c\""],
            signedHeaders: "host;my-header1;my-header2;x-amz-date",
            signature: "acc3ed3afb60bb290fc8d2dd0098b9911fcaa05412b367055dee359757a9c736"),
        Vector(
            name: "post-vanilla", method: "POST", url: "https://example.amazonaws.com/", signedHeaders: "host;x-amz-date",
            signature: "5da7c1a2acd57cee7505fc6676e4e544621c30862966e37dddb68e92efbe5d6b"),
        Vector(
            name: "post-header-value-case", method: "POST", url: "https://example.amazonaws.com/",
            headers: ["My-Header1": "VALUE1"], signedHeaders: "host;my-header1;x-amz-date",
            signature: "cdbc9802e29d2942e5e10b5bccfdd67c5f22c7c4e8ae67b53629efa58b974b7d"),
        Vector(
            name: "post-x-www-form-urlencoded", method: "POST", url: "https://example.amazonaws.com/",
            headers: ["Content-Type": "application/x-www-form-urlencoded"], body: "Param1=value1",
            signedHeaders: "content-type;host;x-amz-date",
            signature: "ff11897932ad3f4e8b18135d722051e5ac45fc38421b1da7b9d196a0fe09473a"),
        Vector(
            name: "post-x-www-form-urlencoded-parameters", method: "POST", url: "https://example.amazonaws.com/",
            headers: ["Content-Type": "application/x-www-form-urlencoded; charset=utf8"], body: "Param1=value1",
            signedHeaders: "content-type;host;x-amz-date",
            signature: "1a72ec8f64bd914b0e42e42607c7fbce7fb2c7465f63e3092b3b0d39fa77a6fe"),
    ]

    @Test("each request signs to the suite's Authorization header, byte for byte", arguments: vectors)
    func publishedVector(_ vector: Vector) throws {
        let signer = SigV4Signer(credentials: Self.credentials, region: "us-east-1", service: "service")
        let request = SignableRequest(
            method: vector.method, url: try #require(URL(string: vector.url)), headers: vector.headers,
            body: Data(vector.body.utf8))
        let signed = signer.sign(request, at: Self.date)
        #expect(
            signed.headers["Authorization"]
                == "AWS4-HMAC-SHA256 Credential=\(Self.scope), SignedHeaders=\(vector.signedHeaders), Signature=\(vector.signature)"
        )
        #expect(signed.headers["X-Amz-Date"] == "20150830T123600Z")
        #expect(signed.headers["X-Amz-Security-Token"] == nil)
    }

    @Test("temporary credentials send their session token and sign it (the suite's post-sts-header-before)")
    func sessionTokenIsSigned() {
        var credentials = Self.credentials
        credentials.sessionToken = Self.sessionToken
        let signer = SigV4Signer(credentials: credentials, region: "us-east-1", service: "service")
        let request = SignableRequest(method: "POST", url: URL(string: "https://example.amazonaws.com/")!)
        let signed = signer.sign(request, at: Self.date)
        #expect(signed.headers["X-Amz-Security-Token"] == Self.sessionToken)
        #expect(
            signed.headers["Authorization"]
                == "AWS4-HMAC-SHA256 Credential=\(Self.scope), SignedHeaders=host;x-amz-date;x-amz-security-token, "
                + "Signature=85d96828115b5dc0cfc3bd16ad9e210dd772bbebba041836c64533a82be05ead")
        var signedPart = signed
        signedPart.headers["Authorization"] = nil
        let (canonical, _) = SigV4Signer.canonicalRequest(signedPart)
        // The suite's string to sign carries this hash of the canonical request.
        #expect(Hashing.sha256Hex(canonical) == "c237e1b440d4c63c32ca95b5b99481081cb7b13c7e40434868e71567c1a882f6")
    }

    @Test("a stale Authorization or date header given by the caller is replaced, not signed")
    func signerOwnsItsHeaders() {
        let signer = SigV4Signer(credentials: Self.credentials, region: "us-east-1", service: "service")
        let request = SignableRequest(
            method: "GET", url: URL(string: "https://example.amazonaws.com/")!,
            headers: ["authorization": "stale", "x-amz-date": "20000101T000000Z"])
        let signed = signer.sign(request, at: Self.date)
        #expect(signed.headers.keys.filter { $0.lowercased() == "authorization" }.count == 1)
        #expect(signed.headers["Authorization"]?.hasSuffix("5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31") == true)
    }

    @Test("a loopback endpoint's port is part of the signed host, as URLSession sends it; a default port is not")
    func hostHeaderKeepsThePort() {
        #expect(SigV4Signer.hostHeader(URL(string: "http://127.0.0.1:5000/")!) == "127.0.0.1:5000")
        #expect(SigV4Signer.hostHeader(URL(string: "https://ec2.us-east-1.amazonaws.com:443/")!) == "ec2.us-east-1.amazonaws.com")
        #expect(SigV4Signer.hostHeader(URL(string: "https://ec2.us-east-1.amazonaws.com")!) == "ec2.us-east-1.amazonaws.com")
    }

    @Test("URI encoding escapes all but letters, digits and '-_.~', as UTF-8 bytes in uppercase hex")
    func uriEncoding() {
        #expect(SigV4Signer.uriEncode("a b+c=d/e*~-_.") == "a%20b%2Bc%3Dd%2Fe%2A~-_.")
        #expect(SigV4Signer.uriEncode("ሴ") == "%E1%88%B4")
    }
}
