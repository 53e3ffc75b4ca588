import Foundation
import KilnCore

#if canImport(FoundationNetworking)
    import FoundationNetworking
#endif

/// Where kiln's AWS credentials come from, chosen the way the AWS CLI chooses (docs/providers.md):
/// keys given outright, or a way to obtain temporary ones when a request needs them.
public indirect enum AWSCredentialSource: Sendable, Equatable {
    /// Keys from the environment or a shared file.
    case keys(AWSCredentials)
    /// STS AssumeRoleWithWebIdentity with the token in `tokenFile` (GitLab's and GitHub's OIDC,
    /// EKS service accounts).
    case webIdentity(roleARN: String, tokenFile: String, sessionName: String)
    /// STS AssumeRole, signed with what `source` gives (a profile's `role_arn` and `source_profile`).
    case assumeRole(roleARN: String, sessionName: String, externalID: String?, source: AWSCredentialSource)
    /// A profile's `credential_process`: a command that prints the credentials as JSON.
    case process(command: String)
    /// The ECS/EKS container endpoint (`AWS_CONTAINER_CREDENTIALS_RELATIVE_URI` or `_FULL_URI`).
    case container(URL, authorization: String?)
    /// EC2's instance metadata service, IMDSv2 (a session token first, then the role's keys).
    case instanceMetadata(URL)

    /// For messages: where the credentials came from, never the keys.
    public var summary: String {
        switch self {
        case .keys: "keys"
        case .webIdentity(let role, _, _): "web identity for \(role)"
        case .assumeRole(let role, _, _, let source): "role \(role) assumed with \(source.summary)"
        case .process(let command): "credential_process \(command.split(separator: " ").first ?? "")"
        case .container(let url, _): "the container credentials endpoint \(url.absoluteString)"
        case .instanceMetadata(let url): "the instance metadata service at \(url.absoluteString)"
        }
    }
}

/// Temporary credentials with the moment they stop working.
struct ExpiringCredentials: Sendable {
    var credentials: AWSCredentials
    var expiration: Date?
}

/// Gives the credentials a request is signed with, fetching temporary ones when none are held
/// or those held expire within five minutes (the AWS SDKs' margin), one fetch at a time.
public actor AWSCredentialProvider {
    public let source: AWSCredentialSource
    let stsEndpoint: URL
    let region: String
    private var held: ExpiringCredentials?

    public init(source: AWSCredentialSource, region: String, stsEndpoint: URL) {
        (self.source, self.region, self.stsEndpoint) = (source, region, stsEndpoint)
    }

    public func current(now: Date = Date()) async throws -> AWSCredentials {
        if let held, held.expiration.map({ $0.timeIntervalSince(now) > 300 }) ?? true { return held.credentials }
        let fetched = try await AWSCredentialFetch(stsEndpoint: stsEndpoint, region: region).fetch(source)
        held = fetched
        return fetched.credentials
    }
}

/// The fetches behind each source. STS, container and metadata answers are parsed here; the
/// STS calls are the Query API EC2Client speaks, signed with SigV4 where the call needs it.
struct AWSCredentialFetch {
    let stsEndpoint: URL
    let region: String

    func fetch(_ source: AWSCredentialSource) async throws -> ExpiringCredentials {
        switch source {
        case .keys(let keys):
            return ExpiringCredentials(credentials: keys, expiration: nil)
        case .process(let command):
            return try await process(command)
        case .webIdentity(let role, let tokenFile, let session):
            guard let token = try? String(contentsOfFile: tokenFile, encoding: .utf8) else {
                throw KilnError(.invalidInput, "AWS web identity: cannot read the token file \(tokenFile) (AWS_WEB_IDENTITY_TOKEN_FILE)")
            }
            return try await sts(
                "AssumeRoleWithWebIdentity",
                [
                    ("RoleArn", role), ("RoleSessionName", session),
                    ("WebIdentityToken", token.trimmingCharacters(in: .whitespacesAndNewlines)),
                ],
                signedWith: nil)
        case .assumeRole(let role, let session, let externalID, let inner):
            let base = try await fetch(inner)
            var parameters = [("RoleArn", role), ("RoleSessionName", session)]
            if let externalID { parameters.append(("ExternalId", externalID)) }
            return try await sts("AssumeRole", parameters, signedWith: base.credentials)
        case .container(let url, let authorization):
            var request = URLRequest(url: url)
            if let authorization { request.setValue(authorization, forHTTPHeaderField: "Authorization") }
            let data = try await send(request, what: "the container credentials endpoint")
            return try Self.decodeJSON(data, from: "the container credentials endpoint \(url.absoluteString)")
        case .instanceMetadata(let base):
            return try await instanceMetadata(base)
        }
    }

    /// IMDSv2: PUT for a session token, then the role's name and its keys with that token.
    private func instanceMetadata(_ base: URL) async throws -> ExpiringCredentials {
        var tokenRequest = URLRequest(url: base.appendingPathComponent("latest/api/token"))
        tokenRequest.httpMethod = "PUT"
        tokenRequest.setValue("21600", forHTTPHeaderField: "X-aws-ec2-metadata-token-ttl-seconds")
        // Off EC2 nothing answers at the link-local address: give up quickly, as the AWS CLI does.
        tokenRequest.timeoutInterval = 2
        let token = String(decoding: try await send(tokenRequest, what: "the instance metadata service (token)"), as: UTF8.self)
        func get(_ path: String) async throws -> Data {
            var request = URLRequest(url: base.appendingPathComponent(path))
            request.setValue(token, forHTTPHeaderField: "X-aws-ec2-metadata-token")
            request.timeoutInterval = 2
            return try await send(request, what: "the instance metadata service (\(path))")
        }
        let roles = String(decoding: try await get("latest/meta-data/iam/security-credentials/"), as: UTF8.self)
        guard let role = roles.split(whereSeparator: \.isNewline).first.map(String.init), !role.isEmpty else {
            throw KilnError(
                .invalidInput,
                "the instance metadata service at \(base.absoluteString) lists no IAM role: the instance has no instance profile")
        }
        return try Self.decodeJSON(
            try await get("latest/meta-data/iam/security-credentials/\(role)"), from: "the instance metadata service's role \(role)")
    }

    /// `credential_process`: run through the shell as the AWS CLI does; its standard output is
    /// `{"Version": 1, "AccessKeyId", "SecretAccessKey", "SessionToken"?, "Expiration"?}`.
    private func process(_ command: String) async throws -> ExpiringCredentials {
        let result = try await ProcessRunner.run("/bin/sh", ["-c", command], timeout: .seconds(60))
        guard result.succeeded else {
            throw KilnError(
                .invalidInput,
                "credential_process exited with status \(result.status): \(result.stderr.trimmingCharacters(in: .whitespacesAndNewlines).suffix(300))"
            )
        }
        let data = Data(result.stdout.utf8)
        if let version = (try? JSONSerialization.jsonObject(with: data) as? [String: Any])?["Version"] as? Int, version != 1 {
            throw KilnError(.invalidInput, "credential_process printed Version \(version); kiln reads Version 1")
        }
        return try Self.decodeJSON(data, from: "credential_process")
    }

    /// The JSON form the container endpoint, the metadata service and credential_process share
    /// (`AccessKeyId`, `SecretAccessKey`, `Token` or `SessionToken`, `Expiration`).
    static func decodeJSON(_ data: Data, from origin: String) throws -> ExpiringCredentials {
        guard let object = try? JSONSerialization.jsonObject(with: data) as? [String: Any],
            let id = object["AccessKeyId"] as? String, let secret = object["SecretAccessKey"] as? String, !id.isEmpty, !secret.isEmpty
        else { throw KilnError(.invalidInput, "\(origin) did not answer with AccessKeyId and SecretAccessKey") }
        let token = (object["SessionToken"] as? String) ?? (object["Token"] as? String)
        let expiration = (object["Expiration"] as? String).flatMap { try? Date($0, strategy: .iso8601) }
        return ExpiringCredentials(
            credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: token), expiration: expiration)
    }

    private func sts(_ action: String, _ parameters: [(String, String)], signedWith keys: AWSCredentials?) async throws
        -> ExpiringCredentials
    {
        let body = Data(EC2Client.formEncode([("Action", action), ("Version", "2011-06-15")] + parameters).utf8)
        var headers = ["Content-Type": "application/x-www-form-urlencoded; charset=utf-8"]
        if let keys {
            let signer = SigV4Signer(credentials: keys, region: region, service: "sts")
            headers = signer.sign(SignableRequest(method: "POST", url: stsEndpoint, headers: headers, body: body), at: Date()).headers
        }
        var request = URLRequest(url: stsEndpoint)
        request.httpMethod = "POST"
        for (name, value) in headers { request.setValue(value, forHTTPHeaderField: name) }
        request.httpBody = body
        let (data, response) = try await exchange(request, what: "STS \(action) at \(stsEndpoint.absoluteString)")
        switch EC2Client.interpret(response, body: data, action: action) {
        case .failure(let error):
            throw KilnError(.invalidInput, "STS \(action) at \(stsEndpoint.absoluteString) refused: \(error.code): \(error.message)")
        case .success(let document):
            guard let result = document.child("\(action)Result")?.child("Credentials"), let id = result.text("AccessKeyId"),
                let secret = result.text("SecretAccessKey")
            else { throw KilnError(.invalidInput, "STS \(action) answered without credentials") }
            return ExpiringCredentials(
                credentials: AWSCredentials(accessKeyID: id, secretAccessKey: secret, sessionToken: result.text("SessionToken")),
                expiration: result.text("Expiration").flatMap { try? Date($0, strategy: .iso8601) })
        }
    }

    private func send(_ request: URLRequest, what: String) async throws -> Data {
        let (data, response) = try await exchange(request, what: what)
        guard (200...299).contains(response.statusCode) else {
            throw KilnError(
                .invalidInput, "\(what) answered HTTP \(response.statusCode): \(String(decoding: data.prefix(200), as: UTF8.self))")
        }
        return data
    }

    private func exchange(_ request: URLRequest, what: String) async throws -> (Data, HTTPURLResponse) {
        do {
            let (data, response) = try await EC2Client.session.data(for: request)
            guard let http = response as? HTTPURLResponse else { throw URLError(.badServerResponse) }
            return (data, http)
        } catch let error as KilnError {
            throw error
        } catch {
            throw KilnError(.io, "\(what): \(error.localizedDescription)")
        }
    }
}
